#!/bin/sh
# Runs inside the VM: the real client (pptp-linux + pppd) against the reference server (pptpd)
# in two network namespaces joined by a veth, once per authentication method, capturing each
# session on the server's side. Output: /mnt/share/<method>.pcap and the two pppd logs.
S=/mnt/share
set -u
ip netns add srv
ip netns add cli
ip link add vs type veth peer name vc
ip link set vs netns srv
ip link set vc netns cli
ip -n srv addr add 192.0.2.1/24 dev vs
ip -n cli addr add 192.0.2.2/24 dev vc
for n in srv cli; do ip -n $n link set lo up; done
ip -n srv link set vs up
ip -n cli link set vc up

mkdir -p /etc/ppp /var/run /var/lock
cat > /etc/ppp/chap-secrets <<EOT
"user" * "clientPass" *
EOT
cp /etc/ppp/chap-secrets /etc/ppp/pap-secrets
cat > /etc/pptpd.conf <<EOT
option /etc/ppp/pptpd-options
localip 10.99.0.1
remoteip 10.99.0.10-20
EOT

one() {
  method=$1; server_auth=$2; client_refuse=$3
  cat > /etc/ppp/pptpd-options <<EOT
name pptpd
$server_auth
nomppe
ms-dns 10.99.0.53
mtu 1400
mru 1400
nodefaultroute
debug
logfile $S/$method-server.log
EOT
  ip netns exec srv tcpdump -Z root -i vs -U -s 0 -w $S/$method.pcap 'tcp port 1723 or ip proto 47' 2>/dev/null &
  tpid=$!
  ip netns exec srv pptpd --fg -c /etc/pptpd.conf &
  spid=$!
  sleep 1
  ip netns exec cli pppd pty "pptp 192.0.2.1 --nolaunchpppd" name user remotename pptpd noauth \
    nobsdcomp nodeflate nomppe refuse-eap $client_refuse nodetach maxfail 1 debug \
    logfile $S/$method-client.log &
  cpid=$!
  i=0
  while [ $i -lt 60 ] && ! ip -n cli addr show ppp0 2>/dev/null | busybox grep -q 'inet 10.99'; do sleep 0.5; i=$((i+1)); done
  ip netns exec cli ping -c 3 -W 2 10.99.0.1 > $S/$method-ping.log 2>&1
  echo "$method ping exit $?"
  kill -TERM $cpid
  i=0
  while [ $i -lt 30 ] && kill -0 $cpid 2>/dev/null; do sleep 0.5; i=$((i+1)); done
  sleep 1
  kill -INT $tpid; kill -TERM $spid
  wait $tpid 2>/dev/null
  killall pptpctrl pppd 2>/dev/null
  sleep 1
}

one mschapv2 require-mschap-v2 "refuse-pap refuse-chap refuse-mschap"
one chapmd5 require-chap "refuse-pap refuse-mschap refuse-mschap-v2"
one pap require-pap "refuse-chap refuse-mschap refuse-mschap-v2"
ls -la $S
