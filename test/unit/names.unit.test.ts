import { strict as assert } from "assert";
import { hostSideName } from "../../sdk/names";

describe("hostSideName (SDK default for a resource's host-side name)", () => {
  it("keeps short names readable", () => {
    assert.equal(hostSideName("home-router-0"), "home_router_0");
    assert.equal(hostSideName("Web Server"), "web_server");
    assert.equal(hostSideName("0day"), "r_0day");
    assert.equal(hostSideName("--x--"), "x");
  });

  it("gives every result the provider's shape: [a-z][a-z0-9_]*, at most 32", () => {
    for (const n of ["home-router-0", "ünïcødé näme", "x; rm -rf /", "$(reboot)", "a".repeat(200), "_", "9", "日本語"]) {
      const h = hostSideName(n);
      assert.match(h, /^[a-z][a-z0-9_]{0,31}$/, `${JSON.stringify(n)} → ${h}`);
    }
  });

  it("does not let truncation merge two long names (each child of a long-named component keeps its own table)", () => {
    const base = "my-very-long-home-network-site-name";
    const names = [0, 1, 2, 10].map((i) => hostSideName(`${base}-vps-${i}`));
    assert.equal(new Set(names).size, names.length, names.join(", "));
    for (const n of names) assert.ok(n.length <= 32, n);
    assert.notEqual(hostSideName("日本語"), hostSideName("中文"), "names with no a-z0-9 left differ too");
    assert.equal(hostSideName(`${base}-vps-0`), names[0], "deterministic across runs");
  });
});
