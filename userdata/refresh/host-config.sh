changed+=$'\n'$("$sbin/orthweb-host-config")
