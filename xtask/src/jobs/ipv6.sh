#!/bin/sh
# Runs inside the VM: Debian's pptp-linux + pppd (MPPE-128, `+ipv6`) dial the gateway, wait
# for IPV6CP and for a global address on ppp0 by SLAAC from the gateway's Router Advertisement,
# then ping the LAN server over IPv6 and move iperf3 over IPv6 both ways; dhcp6c is delegated a
# prefix; then an IPv6-only client (pppd `noip`) dials and pings. Results in
# $S/ipv6.{log,ping,addr,route}, $S/iperf-ipv6-{up,down}.txt, $S/pd.*, $S/v6only.*; exit code 0
# only if all worked.
S=/mnt/share
set -u
ip addr add 192.0.2.2/24 dev eth0
ip link set eth0 up
mkdir -p /etc/ppp /var/run /var/lock
cat > /etc/ppp/chap-secrets <<EOT
"alice" * "s3cret" *
EOT
target=$(cat $S/target6)
pppd pty "pptp 192.0.2.1 --nolaunchpppd" name alice remotename pptpgw noauth nobsdcomp nodeflate \
  require-mppe-128 refuse-eap refuse-pap refuse-chap refuse-mschap +ipv6 nodetach maxfail 1 \
  debug logfile $S/ipv6.log &
pid=$!
rc=0
i=0
while [ $i -lt 240 ] && ! ip -6 addr show dev ppp0 scope global 2>/dev/null | busybox grep -q 'inet6 2001:db8:'; do
  sleep 0.5; i=$((i+1))
done
ip -6 addr show dev ppp0 > $S/ipv6.addr 2>&1
ip -6 route show > $S/ipv6.route 2>&1
busybox grep -q 'inet6 2001:db8:' $S/ipv6.addr || rc=1
ping -6 -c 5 -W 3 $target > $S/ipv6.ping 2>&1 || rc=1
iperf3 -6 -c $target -n 20M > $S/iperf-ipv6-up.txt 2>&1 || rc=1
iperf3 -6 -c $target -n 20M -R > $S/iperf-ipv6-down.txt 2>&1 || rc=1
# DHCPv6 prefix delegation as a CPE does it: WIDE dhcp6c asks for an IA_PD on ppp0 and numbers
# its LAN side (eth0) from the delegated /56: subnet 1, a /64 (sla-len 8); then pings go from
# that address.
mkdir -p /var/lib/dhcpv6 /var/run
cat > /tmp/dhcp6c.conf <<'EOT'
interface ppp0 {
  send ia-pd 0;
};
id-assoc pd 0 {
  prefix-interface eth0 {
    sla-id 1;
    sla-len 8;
  };
};
EOT
dhcp6c -c /tmp/dhcp6c.conf -f -D ppp0 > $S/pd.log 2>&1 &
dpid=$!
i=0
# Until the address is there and past duplicate address detection (not "tentative").
while [ $i -lt 120 ] && ! ip -6 addr show dev eth0 scope global 2>/dev/null | busybox grep 'inet6 2001:db8:' | busybox grep -qv tentative; do
  sleep 0.5; i=$((i+1))
done
ip -6 addr show dev eth0 > $S/pd.addr 2>&1
pa=$(busybox sed -n 's/^ *inet6 \(2001:db8:[0-9a-f:]*\)\/64 .*/\1/p' $S/pd.addr | busybox head -n 1)
if [ -n "$pa" ]; then
  ping -6 -c 5 -W 3 -I "$pa" $target > $S/pd.ping 2>&1 || rc=1
else
  rc=1
fi
kill $dpid 2>/dev/null
kill -TERM $pid
i=0
while [ $i -lt 30 ] && kill -0 $pid 2>/dev/null; do sleep 0.5; i=$((i+1)); done
# An IPv6-only client: `noip` makes pppd Protocol-Reject the gateway's IPCP; the session comes up
# on IPV6CP alone (no IPv4 address on ppp0) and carries IPv6 as before.
pppd pty "pptp 192.0.2.1 --nolaunchpppd" name alice remotename pptpgw noauth nobsdcomp nodeflate \
  require-mppe-128 refuse-eap refuse-pap refuse-chap refuse-mschap noip +ipv6 nodetach maxfail 1 \
  debug logfile $S/v6only.log &
pid=$!
i=0
while [ $i -lt 240 ] && ! ip -6 addr show dev ppp0 scope global 2>/dev/null | busybox grep -q 'inet6 2001:db8:'; do
  sleep 0.5; i=$((i+1))
done
ip addr show dev ppp0 > $S/v6only.addr 2>&1
ping -6 -c 5 -W 3 $target > $S/v6only.ping 2>&1 || rc=1
kill -TERM $pid
i=0
while [ $i -lt 30 ] && kill -0 $pid 2>/dev/null; do sleep 0.5; i=$((i+1)); done
exit $rc
