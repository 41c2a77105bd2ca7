; sun's default IP filter policy: ESP with moon, and pings on the wide-area
; link (used until the policy set is loaded).
IPSEC LOGENable LOGImplicit
  IPSECRule 192.0.2.2 192.0.2.1 PROTO 50 ROUTING LOCAL
  IPSECRule * * ICMP ROUTING EITHER
ENDIPSEC
