#!/bin/sh
# Runs inside the VM: Debian's pptp-linux + pppd dial the gateway (192.0.2.1) over the VM's NIC,
# once per authentication method, ping the gateway's tunnel address through the tunnel, and hang
# up. Results: /mnt/share/<method>.{ping,log}; exit code 0 only if every method pinged.
S=/mnt/share
set -u
ip addr add 192.0.2.2/24 dev eth0
ip link set eth0 up
mkdir -p /etc/ppp /var/run /var/lock
cat > /etc/ppp/chap-secrets <<EOT
"alice" * "s3cret" *
EOT
cp /etc/ppp/chap-secrets /etc/ppp/pap-secrets
rc=0
for m in $(cat $S/methods); do
  mppe=nomppe
  case $m in
    mschapv2) refuse="refuse-pap refuse-chap refuse-mschap" ;;
    chapmd5) refuse="refuse-pap refuse-mschap refuse-mschap-v2" ;;
    pap) refuse="refuse-chap refuse-mschap refuse-mschap-v2" ;;
    mppe) refuse="refuse-pap refuse-chap refuse-mschap"; mppe=require-mppe-128 ;;
  esac
  pppd pty "pptp 192.0.2.1 --nolaunchpppd" name alice remotename pptpgw noauth nobsdcomp nodeflate \
    $mppe refuse-eap $refuse nodetach maxfail 1 debug logfile $S/$m.log &
  pid=$!
  i=0
  while [ $i -lt 80 ] && ! ip addr show ppp0 2>/dev/null | busybox grep -q 'inet 10.99'; do sleep 0.5; i=$((i+1)); done
  if [ $m = mppe ]; then
    # Refused: pppd must give up by itself (no MPPE on offer), never reaching IPCP.
    i=0
    while [ $i -lt 60 ] && kill -0 $pid 2>/dev/null; do sleep 0.5; i=$((i+1)); done
    if kill -0 $pid 2>/dev/null || ip addr show ppp0 2>/dev/null | busybox grep -q 'inet 10.99'; then rc=1; fi
    echo "mppe client refused" > $S/$m.ping
    continue
  fi
  ping -c 5 -W 3 10.99.0.1 > $S/$m.ping 2>&1 || rc=1
  kill -TERM $pid
  i=0
  while [ $i -lt 30 ] && kill -0 $pid 2>/dev/null; do sleep 0.5; i=$((i+1)); done
  sleep 1
done
exit $rc
