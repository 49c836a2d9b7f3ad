import * as pulumi from "@pulumi/pulumi";
import type { types } from "@pulumi/command";

/**
 * How natgate reaches a host: exactly `@pulumi/command`'s `remote.ConnectionArgs` (1.2.x), so one
 * object serves both, plus `sudo`.
 *
 * Defaults as in @pulumi/command: port 22, user root, 10 dial attempts, 15 s each. Unlike
 * @pulumi/command, an unset `hostKey` does not mean "accept anything": natgate trusts the key it
 * sees on first use, keeps its fingerprint in state, and refuses a later connection that shows a
 * different key. `hostKey` takes an OpenSSH public key line or a `SHA256:` fingerprint as
 * `ssh-keygen -lf` prints it.
 */
export type ConnectionArgs = types.input.remote.ConnectionArgs & {
  /** Run natgate's scripts as root through `sudo -n` when `user` is not root (needs NOPASSWD). */
  sudo?: pulumi.Input<boolean>;
};

/**
 * The whole connection is a secret in state (it carries passwords and keys), as @pulumi/command
 * keeps it.
 */
export function secretConnection(c: pulumi.Input<ConnectionArgs>): pulumi.Output<ConnectionArgs> {
  return pulumi.secret(c) as pulumi.Output<ConnectionArgs>;
}
