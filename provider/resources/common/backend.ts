import { z } from "zod";
import { BACKEND_CHOICES } from "../../plan/firewall";

/** The `backend` input of every resource that writes packet-filter rules. */
export const backendChoice = z
  .enum(BACKEND_CHOICES, { error: 'must be "auto", "nftables" or "iptables" ("auto": nftables where nft works on the host, else iptables)' })
  .default("auto");
