step orthweb-shared-cert "$ORTHWEB_TLS_DIR/server.crt" "$ORTHWEB_TLS_DIR/server.key"
