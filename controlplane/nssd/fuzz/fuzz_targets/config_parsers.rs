//! Fuzz the parsers of the files nssd reads. Properties: no panic on any
//! input; the display of a valid nssd.conf parses back to the same settings.
#![no_main]

use gatekey_config::{nssd_conf, saf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = nssd_conf::parse("nssd.conf", text) {
        let shown = c.display();
        let back = nssd_conf::parse("display", &shown).expect("the display parses");
        assert_eq!(back.port(), c.port());
        assert_eq!(back.syslog_level(), c.syslog_level());
        assert_eq!(back.key_ring, c.key_ring);
        assert_eq!(back.tls_certificate, c.tls_certificate);
        assert_eq!(back.keepalive_interval(), c.keepalive_interval());
    }
    if let Ok(db) = saf::parse("nssd.saf", text) {
        // Lookups on whatever the file defines must not panic.
        for p in &db.profiles {
            let _ = db.check(
                &p.name,
                "USER",
                &["GROUP".to_owned()],
                saf::AccessLevel::Read,
            );
            let _ = db.find_profile("EZB.NSS.SYS.CLIENT.IPSEC.CERT");
        }
    }
    let _ = gatekey_keyring::parse_manifest("keyring.conf", text);
    let _ = saf::map_label(text);
});
