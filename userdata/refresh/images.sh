step orthweb-images "$ORTHWEB_ETC/aws/credentials"
