import * as pulumi from "@pulumi/pulumi";
import type { types } from "@pulumi/command";

/**
 * How natgate reaches a host: exactly `@pulumi/command`'s `remote.ConnectionArgs` (1.2.x), so one
 * object serves both, plus `sudo`.
 *
 * Defaults as in @pulumi/command: port 22, user root, 10 dial attempts, 15 s each. Unlike
 * @pulumi/command, an unset `hostKey` does not mean "accept anything": natgate checks the host's
 * key against OpenSSH's known_hosts files (as `ssh` does), and where they do not list the host it
 * trusts the key it sees on first use, keeps its fingerprint in state, and refuses a later
 * connection that shows a different key. `hostKey` (an OpenSSH public key line or a `SHA256:`
 * fingerprint as `ssh-keygen -lf` prints it) wins over both.
 */
export type ConnectionArgs = types.input.remote.ConnectionArgs & {
  /** Run natgate's scripts as root through `sudo -n` when `user` is not root (needs NOPASSWD). */
  sudo?: pulumi.Input<boolean>;
  /**
   * Which known_hosts file to check host keys against (an absolute path or `~/...`), or false for
   * none; unset: ssh's own (~/.ssh/known_hosts, known_hosts2, /etc/ssh/ssh_known_hosts). Applies
   * to the jump host too.
   */
  knownHosts?: pulumi.Input<string | false>;
  /**
   * How long one of natgate's remote scripts may run, in seconds (default 300; the Tunnel's 120):
   * a host that accepts SSH and then stalls fails the step, naming the host, the step and the time.
   */
  scriptTimeout?: pulumi.Input<number>;
};

/**
 * The whole connection is a secret in state (it carries passwords and keys), as @pulumi/command
 * keeps it.
 */
export function secretConnection(c: pulumi.Input<ConnectionArgs>): pulumi.Output<ConnectionArgs> {
  return pulumi.secret(c) as pulumi.Output<ConnectionArgs>;
}
