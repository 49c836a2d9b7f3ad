import { NatgateError } from "../ssh/errors";
import { shQuote } from "../ssh/quote";

/** Where natgate keeps its boot entries and runner on a host, and which init systems it knows. */
export const NATGATE_DIR = "/etc/natgate";
export const BOOT_DIR = `${NATGATE_DIR}/boot.d`;
export const RUNNER_PATH = `${NATGATE_DIR}/boot.sh`;
export const MADE_DIRS = `${NATGATE_DIR}/made-dirs`;
/** The Tunnel's key files (`<if>.key`) and the endpoints natgate.service keeps at stop (`<if>.endpoints`). */
export const WG_KEY_DIR = `${NATGATE_DIR}/wg`;

export type InitSystem = "systemd" | "procd" | "none";

/** Entry kinds in the order the runner runs them: the later ones need what the earlier set up. */
export const BOOT_ORDER = ["tunnel", "routes", "ret", "dnat"] as const;
export type BootKind = (typeof BOOT_ORDER)[number];


/** `<kind>-<id>.sh`; ids are validated names (a-z0-9_, interface names, table numbers). */
export function bootEntryName(kind: BootKind, id: string | number): string {
  const name = `${kind}-${id}.sh`;
  if (!/^[A-Za-z0-9_.=+-]+$/.test(name)) throw new NatgateError("internal", `boot entry name ${JSON.stringify(name)} has characters natgate does not write`);
  return name;
}

export function bootEntryPath(name: string): string {
  return `${BOOT_DIR}/${name}`;
}

/**
 * One entry: `prefix` (header and `set -- <args>`) and `suffix` carry the resource's values and
 * travel as script arguments; `body` is constant script text and travels inside the persist
 * script (arguments have a size limit on some SSH servers; dropbear's is 9000 bytes).
 */
export interface BootEntry {
  name: string;
  prefix: string;
  body: string;
  suffix: string;
}

export function bootEntry(kind: BootKind, id: string | number, title: string, args: string[], body: string, suffix = ""): BootEntry {
  const prefix =
    "#!/bin/sh\n" +
    `# natgate boot entry: ${title.replace(/\n/g, " ")}.\n` +
    "# Written by natgate (pulumi up), removed by the resource's delete; run by /etc/natgate/boot.sh.\n" +
    `set --${args.map((a) => " " + shQuote(a)).join("")}\n`;
  return { name: bootEntryName(kind, id), prefix, body, suffix };
}

export function bootEntryText(e: BootEntry): string {
  return e.prefix + e.body + e.suffix;
}

