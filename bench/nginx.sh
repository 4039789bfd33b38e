# Sourced by the benchmarks: the local nginx they all load, answering every path with a small
# JSON body over kept-alive connections.
#
#   free_port                          prints a free loopback port
#   start_nginx WORK [CORE] [TLS]      serves on 127.0.0.1:$nginx_port, pinned to CORE if given;
#                                      TLS=1 serves https with a self-signed certificate in WORK

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start_nginx() {
  local work=$1 core=${2:-} tls=${3:-} tls_listen="" tls_conf=""
  if [ -n "$tls" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/key.pem" -out "$work/cert.pem" -days 2 \
      -subj /CN=localhost >/dev/null 2>&1
    tls_listen=" ssl" tls_conf="ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;"
  fi
  nginx_port=$(free_port)
  cat > "$work/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile 40000;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 30000; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  client_body_temp_path $work;
  server {
    listen 127.0.0.1:$nginx_port$tls_listen backlog=16384;
    $tls_conf
    location / { default_type application/json; return 200 '{"status":"ok"}'; }
  }
}
CONF
  ulimit -n 65536 2>/dev/null || true
  if [ -n "$core" ]; then
    taskset -c "$core" nginx -c "$work/nginx.conf" -p "$work"
  else
    nginx -c "$work/nginx.conf" -p "$work"
  fi
  sleep 0.5
}
