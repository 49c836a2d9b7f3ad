# Turns a fresh mount+UTS namespace into a lab host, then becomes its sshd.
#   sh host-init.sh NAME HOSTDIR KEYDIR      (run by lab.sh through ip netns exec + unshare)
# Namespaces share the machine's file system; each host gets a private /run and copy-on-write
# /etc, /var, /root, /home so hosts never see each other's /etc/wireguard, init scripts or users
# (the homes over an empty directory: a fresh host's, not this machine's).
# Every SSH session inherits this mount namespace from sshd.
set -eu
name=$1 dir=$2 keys=$3

hostname "$name"
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/sshd /run/lock
chmod 755 /run/sshd
for d in etc var root home; do
  mkdir -p "$dir/fs/$d.upper" "$dir/fs/$d.work"
  lower=/$d
  # Homes start as a fresh install's, not this machine's: its root's .bashrc (bash sources it for
  # every command sshd runs) may start version managers that cost 90 ms per command, and its
  # dotfiles may hold credentials no lab host should see.
  if [ "$d" = root ] || [ "$d" = home ]; then
    lower=$dir/fs/$d.lower
    mkdir -p "$lower"
  fi
  mount -t overlay overlay -o "lowerdir=$lower,upperdir=$dir/fs/$d.upper,workdir=$dir/fs/$d.work" "/$d"
done
chmod 700 /root
# What Debian's base-files gives root (skipped where this machine has none: nothing to imitate).
for f in bashrc profile; do
  [ ! -f "/usr/share/base-files/dot.$f" ] || [ -e "/root/.$f" ] || install -m 644 "/usr/share/base-files/dot.$f" "/root/.$f"
done

# sudo warns on every call when the hostname does not resolve.
printf '127.0.1.1\t%s\n' "$name" >>/etc/hosts

install -d -m 700 /root/.ssh
install -m 600 "$keys/root_ed25519.pub" /root/.ssh/authorized_keys

# ops: key login, passwordless sudo. sshd without PAM refuses a locked account, hence '*'.
id ops >/dev/null 2>&1 || useradd -m -s /bin/sh ops
usermod -p '*' ops
install -d -m 700 -o ops -g ops /home/ops/.ssh
install -m 600 -o ops -g ops "$keys/ops_ed25519.pub" /home/ops/.ssh/authorized_keys
echo 'ops ALL=(ALL:ALL) NOPASSWD: ALL' >/etc/sudoers.d/ops
chmod 440 /etc/sudoers.d/ops

# pwuser: password login, sudo asks for the password.
id pwuser >/dev/null 2>&1 || useradd -m -s /bin/sh pwuser
printf 'pwuser:%s\n' "$(cat "$keys/pwuser.password")" | chpasswd
echo 'pwuser ALL=(ALL:ALL) ALL' >/etc/sudoers.d/pwuser
chmod 440 /etc/sudoers.d/pwuser

exec /usr/sbin/sshd -D -f "$dir/sshd_config" -E "$dir/sshd.log"
