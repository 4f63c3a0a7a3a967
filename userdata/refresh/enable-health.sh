# The load balancer's health check answers from the first boot on (503 until Orthanc serves).
systemctl enable --now orthweb-health.socket
