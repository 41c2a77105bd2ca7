# sun's charon: one connection accepting any of moon's addresses.
set -e
D=/run/sun-sw
mkdir -p $D
cat > $D/swanctl.conf <<EOT
connections {
  moons {
    version = 2
    mobike = no
    local_addrs = 192.0.2.2
    remote_addrs = 192.0.2.0/24
    proposals = aes256gcm16-prfsha256-x25519
    local { auth = psk
            id = 192.0.2.2 }
    remote { auth = psk }
    children { t { mode = transport
                   esp_proposals = aes256gcm16 } }
  }
}
secrets {
  ike-all { secret = "benchmark pre-shared key" }
}
EOT
