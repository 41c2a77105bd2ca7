//! Sans-IO IKEv2 and IKEv1 engine: wire codec, state machines, key derivation, crypto suites.
