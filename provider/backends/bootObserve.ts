/** Reading boot entries back: what is on the host compared with what natgate would write. */
import { NatgateError } from "../ssh/errors";
import { createHash } from "node:crypto";
import { RUNNER_PATH, bootEntryPath, bootEntryText, type BootEntry, type InitSystem } from "./bootPaths";
import { runnerFiles, type BootFile } from "./bootRunner";

// ---------- reading back ----------

export interface BootStatus {
  init: InitSystem;
  /** path → state as boot_states prints it. */
  files: Map<string, string>;
}

/** The lines of the @@boot section boot_show prints. */
export function parseBootShow(lines: string[]): BootStatus {
  let init: InitSystem | undefined;
  const files = new Map<string, string>();
  for (const line of lines) {
    const m = /^init (systemd|procd|none)$/.exec(line.trim());
    if (m) {
      init = m[1] as InitSystem;
      continue;
    }
    const f = /^(\S*) (\/\S+)$/.exec(line.trim());
    if (f) files.set(f[2]!, f[1]!);
  }
  if (!init) throw new NatgateError("unexpected-output", `unexpected boot state output:\n${lines.join("\n").slice(0, 300)}`);
  return { init, files };
}

function md5(text: string): string {
  return createHash("md5").update(text, "utf8").digest("hex");
}

export function expectedFileState(f: BootFile): string {
  if (f.target !== undefined) return `@${f.target}`;
  const exec = f.mode !== undefined && /[1357]/.test(f.mode);
  return md5(f.content ?? "") + (exec ? "+x" : "");
}

/**
 * The resource's boot state as lines of `rendered`: the desired form (also what the host shows
 * when the entry and the runner are as natgate would write them) and the live form.
 */
export function bootRenderedLine(entryName: string): string {
  return `# at boot: ${RUNNER_PATH} runs ${bootEntryPath(entryName)}`;
}

export interface BootObservation {
  rendered: string[];
  drift: string[];
  facts: { boot: InitSystem | "off"; bootNote: string };
}

function fileProblem(f: BootFile, state: string | undefined): string | undefined {
  if (state === undefined || state === "-") return `${f.path} is missing`;
  if (state === expectedFileState(f)) return undefined;
  if (f.target !== undefined) return `${f.path} does not link to ${f.target}`;
  return `${f.path} is not what natgate writes (changed by hand, or from another natgate version)`;
}

const NOTES: Record<InitSystem | "off", string> = {
  systemd: `natgate.service (systemd) runs ${RUNNER_PATH} at boot`,
  procd: `/etc/init.d/natgate (procd) runs ${RUNNER_PATH} at boot, and /etc/hotplug.d/iface/99-natgate when an interface comes up`,
  none: `no init system detected: run ${RUNNER_PATH} at boot`,
  off: "persist is false: nothing restores this after a reboot until the next pulumi up",
};

/**
 * Compare the host's boot state with what the resource needs: its entry (when persisting) and the
 * runner for the host's init system; without persist, no entry. `entry` undefined = persist off.
 * With `upgrading` (the state was written by an older natgate), an entry or runner file in that
 * release's text is what that release wrote, not drift: the next `up` rewrites it.
 */
export function observeBoot(entryName: string, entry: BootEntry | undefined, status: BootStatus, upgrading = false): BootObservation {
  const path = bootEntryPath(entryName);
  const live = status.files.get(path);
  const present = live !== undefined && live !== "-";
  if (!entry) {
    return {
      rendered: present ? [`${bootRenderedLine(entryName)} (persist is false)`] : [],
      drift: present ? [`boot entry ${path} exists but persist is false`] : [],
      facts: { boot: "off", bootNote: NOTES.off },
    };
  }
  const drift: string[] = [];
  const want: BootFile = { path, content: bootEntryText(entry), mode: "600" };
  if (!present) drift.push(`boot entry ${path} is missing: nothing would restore this after a reboot`);
  else if (live !== expectedFileState(want) && !upgrading) drift.push(`boot entry ${path} is out of date`);
  for (const f of runnerFiles(status.init)) {
    const p = upgrading ? undefined : fileProblem(f, status.files.get(f.path));
    if (p) drift.push(`boot runner: ${p}`);
  }
  const line = bootRenderedLine(entryName);
  const rendered = !present ? [] : drift.length === 0 ? [line] : [`${line} (not as natgate writes it: see drift)`];
  return { rendered, drift, facts: { boot: status.init, bootNote: NOTES[status.init] } };
}

