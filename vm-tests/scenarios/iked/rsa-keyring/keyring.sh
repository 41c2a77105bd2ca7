# Build this host's key ring under /run (mode 0700/0600, as the keyring requires).
set -e
K=/run/gk-keyring
mkdir -p $K
cp "$SCENARIO_DIR/../rsa-keyring/pki/ca.pem" "$SCENARIO_DIR/../rsa-keyring/pki/$HOST.pem" "$SCENARIO_DIR/../rsa-keyring/pki/$HOST.key" $K/
cat > $K/keyring.conf <<EOT
Certificate $HOST { Usage Personal File $HOST.pem Key $HOST.key Default }
Certificate CA { Usage CertAuth File ca.pem }
EOT
chmod 700 $K
chmod 600 $K/*
