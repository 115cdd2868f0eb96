#!/bin/sh
# Runs inside the VM: Debian's pptp-linux + pppd dial the gateway (192.0.2.1) over the VM's NIC,
# once per line of $S/methods ("POLICY CASE"), ping $S/target (the gateway's tunnel address, or
# a server behind it) through the tunnel, and hang up. Before a line whose POLICY differs from the gateway's, the job asks the
# host to switch `[ppp] mppe` (it rewrites the config and sends SIGHUP) and waits for it.
# Results: /mnt/share/<policy>-<case>.{ping,log}; exit code 0 only if every case did what it
# must (connect and ping, or be refused).
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
target=$(cat $S/target 2>/dev/null || echo 10.99.0.1)
current=require
policy() {
  [ "$current" = "$1" ] && return
  echo "$1" > $S/policy-request
  i=0
  while [ $i -lt 100 ] && [ "$(cat $S/policy-done 2>/dev/null)" != "$1" ]; do sleep 0.2; i=$((i+1)); done
  current=$1
}
while read -r pol m; do
  [ -z "$m" ] && continue
  policy "$pol"
  name=$pol-$m
  # Cases: mppe-stateful (require-mppe-128 mppe-stateful), mppe* (require-mppe-128), plain* (nomppe), any* (pppd's default: MPPE if asked),
  # chapmd5/pap (nomppe, that method), tt1-3 (require-mppe-128 with pptp-linux reordering).
  mppe=nomppe
  test=""
  refuse="refuse-pap refuse-chap refuse-mschap"
  case $m in
    mppe-stateful) mppe="require-mppe-128 mppe-stateful" ;;
    mppe*|tt*) mppe=require-mppe-128 ;;
    any*) mppe="" ;;
    chapmd5*) refuse="refuse-pap refuse-mschap refuse-mschap-v2" ;;
    pap*) refuse="refuse-chap refuse-mschap refuse-mschap-v2" ;;
  esac
  case $m in tt1|tt2|tt3) test="--test-type ${m#tt} --test-rate 10" ;; esac
  pppd pty "pptp 192.0.2.1 --nolaunchpppd $test" name alice remotename pptpgw noauth nobsdcomp nodeflate \
    $mppe refuse-eap $refuse nodetach maxfail 1 debug logfile $S/$name.log &
  pid=$!
  # The gateway refuses: pppd must give up by itself, never reaching IPCP.
  if [ -f $S/refused-$name ]; then
    i=0
    while [ $i -lt 90 ] && kill -0 $pid 2>/dev/null; do sleep 0.5; i=$((i+1)); done
    if kill -0 $pid 2>/dev/null || ip addr show ppp0 2>/dev/null | busybox grep -q 'inet 10.99'; then
      rc=1; echo "$name: NOT refused" > $S/$name.ping; kill -TERM $pid
    else
      echo "$name: refused" > $S/$name.ping
    fi
    sleep 1
    continue
  fi
  i=0
  # Reordering test types hold packets back, so negotiation takes longer there.
  # Up means pppd has the address *and* the peer route (it adds the route after the address; a
  # ping in between fails with "Network is unreachable").
  while [ $i -lt 240 ] && ! ip route show dev ppp0 2>/dev/null | busybox grep -q '10.99.0.1'; do sleep 0.5; i=$((i+1)); done
  [ "$target" = 10.99.0.1 ] || ip route replace $target/32 dev ppp0
  case $m in
    tt*)
      # Reordering injected by pptp-linux: the run must complete (late packets are dropped, as
      # pptp.ko does; the gateway counts them).
      ping -c 20 -i 0.2 -W 3 $target > $S/$name.ping 2>&1
      busybox grep -q " 0 received" $S/$name.ping && rc=1
      ;;
    *) ping -c 5 -W 3 $target > $S/$name.ping 2>&1 || rc=1 ;;
  esac
  # iperf-<case> holds how much to move each way.
  if [ -f $S/iperf-$name ]; then
    n=$(cat $S/iperf-$name)
    iperf3 -c $target -n $n > $S/iperf-$name-up.txt 2>&1 || rc=1
    iperf3 -c $target -n $n -R > $S/iperf-$name-down.txt 2>&1 || rc=1
  fi
  kill -TERM $pid
  i=0
  while [ $i -lt 30 ] && kill -0 $pid 2>/dev/null; do sleep 0.5; i=$((i+1)); done
  sleep 1
done < $S/methods
exit $rc
