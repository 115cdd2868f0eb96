#!/bin/sh
# Runs inside the VM: Debian's pptp-linux + pppd (MPPE-128) dial the gateway, then ping
# $S/target every 0.2 s (150 pings) while the host kills the gateway's worker (SIGKILL) and
# its supervisor starts another. Writes $S/up when the link is up, $S/restart.ping (ping's
# summary), $S/pppd-alive if pppd never saw the link end; then hangs up.
S=/mnt/share
set -u
ip addr add 192.0.2.2/24 dev eth0
ip link set eth0 up
mkdir -p /etc/ppp /var/run /var/lock
cat > /etc/ppp/chap-secrets <<EOT
"alice" * "s3cret" *
EOT
target=$(cat $S/target 2>/dev/null || echo 10.99.0.1)
pppd pty "pptp 192.0.2.1 --nolaunchpppd" name alice remotename pptpgw noauth nobsdcomp nodeflate \
  require-mppe-128 refuse-eap refuse-pap refuse-chap refuse-mschap nodetach maxfail 1 \
  lcp-echo-interval 2 lcp-echo-failure 3 debug logfile $S/restart.log &
pid=$!
i=0
while [ $i -lt 240 ] && ! ip route show dev ppp0 2>/dev/null | busybox grep -q '10.99.0.1'; do sleep 0.5; i=$((i+1)); done
[ "$target" = 10.99.0.1 ] || ip route replace $target/32 dev ppp0
echo up > $S/up
rc=0
ping -c 150 -i 0.2 -W 2 $target > $S/restart.ping 2>&1 || rc=1
# pppd's LCP echo (every 2 s, 3 misses end the link) ran across the restart too.
sleep 8
if kill -0 $pid 2>/dev/null && ip addr show ppp0 2>/dev/null | busybox grep -q 'inet 10.99'; then
  echo alive > $S/pppd-alive
else
  rc=1
fi
kill -TERM $pid
i=0
while [ $i -lt 30 ] && kill -0 $pid 2>/dev/null; do sleep 0.5; i=$((i+1)); done
exit $rc
