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
  test=""
  case $m in
    tt1|tt2|tt3) refuse="refuse-pap refuse-chap refuse-mschap"; test="--test-type ${m#tt} --test-rate 10" ;;
  esac
  case $m in
    mschapv2) refuse="refuse-pap refuse-chap refuse-mschap" ;;
    chapmd5) refuse="refuse-pap refuse-mschap refuse-mschap-v2" ;;
    pap) refuse="refuse-chap refuse-mschap refuse-mschap-v2" ;;
    mppe) refuse="refuse-pap refuse-chap refuse-mschap"; mppe=require-mppe-128 ;;
  esac
  pppd pty "pptp 192.0.2.1 --nolaunchpppd $test" name alice remotename pptpgw noauth nobsdcomp nodeflate \
    $mppe refuse-eap $refuse nodetach maxfail 1 debug logfile $S/$m.log &
  pid=$!
  i=0
  # Reordering test types hold packets back, so negotiation takes longer there.
  # Up means pppd has the address *and* the peer route (it adds the route after the address; a
  # ping in between fails with "Network is unreachable").
  while [ $i -lt 240 ] && ! ip route show dev ppp0 2>/dev/null | busybox grep -q '10.99.0.1'; do sleep 0.5; i=$((i+1)); done
  if [ $m = mppe ]; then
    # Refused: pppd must give up by itself (no MPPE on offer), never reaching IPCP.
    i=0
    while [ $i -lt 60 ] && kill -0 $pid 2>/dev/null; do sleep 0.5; i=$((i+1)); done
    if kill -0 $pid 2>/dev/null || ip addr show ppp0 2>/dev/null | busybox grep -q 'inet 10.99'; then rc=1; fi
    echo "mppe client refused" > $S/$m.ping
    continue
  fi
  case $m in
    tt*)
      # Reordering injected by pptp-linux: the run must complete (late packets are dropped, as
      # pptp.ko does; the gateway counts them).
      ping -c 20 -i 0.2 -W 3 10.99.0.1 > $S/$m.ping 2>&1
      busybox grep -q " 0 received" $S/$m.ping && rc=1
      ;;
    *) ping -c 5 -W 3 10.99.0.1 > $S/$m.ping 2>&1 || rc=1 ;;
  esac
  if [ $m = mschapv2 ] && [ -f $S/iperf ]; then
    iperf3 -c 10.99.0.1 -n 50M > $S/iperf-up.txt 2>&1 || rc=1
    iperf3 -c 10.99.0.1 -n 50M -R > $S/iperf-down.txt 2>&1 || rc=1
  fi
  kill -TERM $pid
  i=0
  while [ $i -lt 30 ] && kill -0 $pid 2>/dev/null; do sleep 0.5; i=$((i+1)); done
  sleep 1
done
exit $rc
