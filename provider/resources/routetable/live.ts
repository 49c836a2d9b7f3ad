import { parseRoutes, type LiveRoute } from "../../backends/iproute";
import { parseBootShow, type BootStatus } from "../../backends/persist";
import { NatgateError } from "../../ssh/errors";
import { splitSections } from "../common/host";
import { parseClaims } from "../../backends/claims";

/** A routing table as read back: its routes and the boot entry's state. */
export interface RoutesLive {
  /** IPv4 routes, then IPv6 ones. */
  routes: LiveRoute[];
  boot: BootStatus;
  /** Every natgate claim on the host: key → owner. */
  claims: Map<string, string>;
}

export function parseRoutesLive(stdout: string): RoutesLive {
  const sections = splitSections(stdout);
  const s = sections.get("routes");
  const boot = sections.get("boot");
  if (!s || !boot) throw new NatgateError("unexpected-output", `unexpected output from the PolicyRouteTable read script:\n${stdout.slice(0, 500)}`);
  const s6 = sections.get("routes6");
  const routes = [...parseRoutes(s.lines.join("\n")), ...(s6 ? parseRoutes(s6.lines.join("\n"), 6) : [])];
  return { routes, boot: parseBootShow(boot.lines), claims: parseClaims(sections.get("claims")?.lines) };
}
