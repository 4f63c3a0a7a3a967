step orthweb-host-config "$ORTHWEB_ETC/orthanc-host.json"
