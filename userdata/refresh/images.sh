changed+=$'\n'$("$sbin/orthweb-images")
