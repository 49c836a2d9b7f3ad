import { strict as assert } from "assert";
import { execFileSync } from "child_process";
import { existsSync } from "fs";
import { scriptCommand, shQuote } from "../../provider/ssh";
import { ConnectionSchema } from "../../provider/ssh";

const HOSTILE = [
  "",
  "plain",
  "'",
  "''",
  "a'b'c",
  "'; touch /tmp/natgate-pwned; '",
  "$(touch /tmp/natgate-pwned)",
  "`touch /tmp/natgate-pwned`",
  "${HOME}",
  "$HOME",
  "a\nb",
  "trailing newline\n",
  "\r\n",
  "  leading and  inner spaces ",
  "\ttab",
  "*",
  "/*",
  "?",
  "[a-z]*",
  "~",
  "~root",
  "\\",
  "\\'",
  '"',
  '"$(id)"',
  "!",
  "!!",
  ";|&<>(){}",
  "#not a comment",
  "-n",
  "--",
  "-e \\x41",
  "%s%n",
  "ünïcødé ✓ 🚀 中文",
  "\x01\x1b[31mcontrol\x7f",
  "x".repeat(100_000),
];

const SHELLS = ["/bin/sh", "/usr/bin/dash", "/bin/bash", "/bin/busybox"].filter((s) => existsSync(s));

// busybox needs its applet name to act as a shell.
const shellArgv = (shell: string, script: string): [string, string[]] =>
  shell.endsWith("busybox") ? [shell, ["sh", "-c", script]] : [shell, ["-c", script]];

describe("shQuote", () => {
  it("has at least /bin/sh to prove quoting against", () => {
    assert.ok(SHELLS.includes("/bin/sh"));
  });

  for (const shell of SHELLS) {
    it(`round-trips every hostile string byte for byte through ${shell} as exactly one word`, () => {
      for (const s of HOSTILE) {
        // `set --` makes the shell split the line: one word and the same bytes means quoting held.
        const [file, argv] = shellArgv(shell, `set -- ${shQuote(s)}; printf '%s' "$#"; printf '|%s' "$1"`);
        const out = execFileSync(file, argv, { maxBuffer: 10 * 1024 * 1024 });
        assert.deepEqual(out, Buffer.concat([Buffer.from("1|"), Buffer.from(s, "utf8")]), `string ${JSON.stringify(s.slice(0, 60))}`);
      }
      assert.equal(existsSync("/tmp/natgate-pwned"), false, "a hostile string ran a command");
    });

    it(`passes all hostile strings as separate positional args of sh -c '...' _ through ${shell}`, () => {
      const words = HOSTILE.slice(0, -1).map(shQuote).join(" ");
      const [file, argv] = shellArgv(shell, `sh -c 'printf "%s\\0" "$@"' _ ${words}`);
      const out = execFileSync(file, argv);
      const expected = Buffer.concat(HOSTILE.slice(0, -1).map((s) => Buffer.from(s + "\0", "utf8")));
      assert.deepEqual(out, expected);
    });
  }

  it("quotes to the simplest POSIX form", () => {
    assert.equal(shQuote(""), "''");
    assert.equal(shQuote("abc"), "'abc'");
    assert.equal(shQuote("it's"), "'it'\\''s'");
  });

  it("refuses a NUL byte, which no argv can carry", () => {
    assert.throws(() => shQuote("a\0b"), /NUL/);
    assert.throws(() => shQuote("\0"), /NUL/);
  });

  it("refuses a non-string instead of quoting its String() form", () => {
    assert.throws(() => shQuote(undefined as unknown as string), /expected a string/);
    assert.throws(() => shQuote(42 as unknown as string), /expected a string/);
  });
});

describe("scriptCommand", () => {
  const root = ConnectionSchema.parse({ host: "h.example", password: "x" });
  const ops = ConnectionSchema.parse({ host: "h.example", user: "ops", password: "x", sudo: true });
  const opsNoSudo = ConnectionSchema.parse({ host: "h.example", user: "ops", password: "x" });
  const rootSudo = ConnectionSchema.parse({ host: "h.example", password: "x", sudo: true });

  it("is sh -s with quoted args, sudo -n only for a non-root user with sudo", () => {
    assert.equal(scriptCommand(root, []), "sh -s --");
    assert.equal(scriptCommand(root, ["a b", "c'd"]), "sh -s -- 'a b' 'c'\\''d'");
    assert.equal(scriptCommand(ops, ["x"]), "sudo -n sh -s -- 'x'");
    assert.equal(scriptCommand(opsNoSudo, ["x"]), "sh -s -- 'x'");
    assert.equal(scriptCommand(rootSudo, ["x"]), "sh -s -- 'x'");
  });

  it("delivers hostile args intact to a script read from stdin, run locally the way sshd runs it", () => {
    const args = HOSTILE.slice(0, -1);
    const script = 'printf "%s\\0" "$@"\n';
    // sshd hands the command line to the user's shell with -c; the script arrives on stdin.
    const out = execFileSync("/bin/sh", ["-c", scriptCommand(root, args)], { input: script });
    assert.deepEqual(out, Buffer.concat(args.map((s) => Buffer.from(s + "\0", "utf8"))));
    assert.equal(existsSync("/tmp/natgate-pwned"), false);
  });

  it("refuses a NUL in an argument before anything is sent", () => {
    assert.throws(() => scriptCommand(root, ["ok", "bad\0"]), /NUL/);
  });
});
