// Golden renders: for each resource kind and each backend, the exact lines a preview shows and
// the exact text an apply sends, for the layouts users write. A change to any of them shows up
// here as a diff of a file under test/golden/<backend>/, reviewed like code.
// Update after an intended change: UPDATE_GOLDEN=1 node_modules/.bin/mocha test/golden/golden.unit.test.ts
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { goldenCases } from "./cases";
import { NATGATE_VERSION } from "../../provider/engine/version";

const dir = __dirname;

describe("golden renders per backend per resource", () => {
  for (const c of goldenCases()) {
    it(`${c.backend}/${c.file}`, () => {
      const file = path.join(dir, c.backend, c.file);
      if (process.env.UPDATE_GOLDEN) {
        fs.mkdirSync(path.dirname(file), { recursive: true });
        fs.writeFileSync(file, c.text);
      }
      assert.ok(fs.existsSync(file), `${file} is missing: run with UPDATE_GOLDEN=1 and review the new file`);
      assert.equal(c.text, fs.readFileSync(file, "utf8"));
    });
  }
});

describe("version", () => {
  it("the version kept in every resource's outputs is the package's", () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", "package.json"), "utf8")) as { version: string };
    assert.equal(NATGATE_VERSION, pkg.version);
  });
});
