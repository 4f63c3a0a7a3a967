changed+=$'\n'$("$sbin/orthweb-shared-cert")
