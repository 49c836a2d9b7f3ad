// The provider's shape, as issue 8 set it: shell text only in provider/backends/, no source file
// over 400 lines, and one framework (provider/engine) that every kind's provider comes from.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";

const root = path.resolve(__dirname, "..", "..");

function sources(dir: string): string[] {
  return fs.readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = path.join(dir, e.name);
    return e.isDirectory() ? sources(rel) : e.name.endsWith(".ts") ? [rel] : [];
  });
}

/** Code without comments: a comment may well quote a command. */
function code(file: string): string[] {
  const text = fs.readFileSync(path.join(root, file), "utf8").replace(/\/\*[\s\S]*?\*\//g, "");
  return text.split("\n").filter((l) => !/^\s*\/\//.test(l));
}

// Marks of script text: a command substitution, a redirection to /dev/null, a here-document, sh's
// `set --`, or a script that starts with the prelude.
const SCRIPT = /\$\([a-z]|[12]?>\s*\/dev\/null|<<\s*['"]?[A-Z]+|\bset -- |\$\{SH_PRELUDE\}/;

describe("the provider's layout", () => {
  const files = [...sources("provider"), ...sources("sdk")];

  it("finds the sources", () => assert.ok(files.length > 40, `${files.length} files`));

  it("no shell text outside provider/backends/", () => {
    const offenders = files
      .filter((f) => !f.startsWith(path.join("provider", "backends")))
      .flatMap((f) => code(f).filter((l) => SCRIPT.test(l)).map((l) => `${f}: ${l.trim()}`));
    assert.deepEqual(offenders, []);
  });

  it("the check sees script text where there is some (backends/)", () => {
    const hits = sources(path.join("provider", "backends")).filter((f) => code(f).some((l) => SCRIPT.test(l)));
    assert.ok(hits.length >= 5, hits.join(", "));
  });

  it("no source file in provider/ or sdk/ is over 400 lines", () => {
    const long = files.map((f) => [f, fs.readFileSync(path.join(root, f), "utf8").split("\n").length] as const).filter(([, n]) => n > 400);
    assert.deepEqual(long, []);
  });

  it("every kind's provider comes from the engine (one makeProvider, no other ResourceProvider literal)", () => {
    const literal = files.filter((f) => code(f).some((l) => /:\s*pulumi\.dynamic\.ResourceProvider\s*=\s*\{/.test(l)));
    assert.deepEqual(literal, []);
    const makers = files.filter((f) => code(f).some((l) => /export function makeProvider\b/.test(l)));
    assert.deepEqual(makers, [path.join("provider", "engine", "provider.ts")]);
  });
});
