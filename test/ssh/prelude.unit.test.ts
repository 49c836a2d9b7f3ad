// Every script natgate runs on a host starts with SH_PRELUDE, so its root check (and `need`) applies;
// Host.run prepends it itself, these are the scripts sent by runScript directly.
import { strict as assert } from "assert";
import { SH_PRELUDE } from "../../provider/ssh";
import { APPLY_HEAD, DELETE_SCRIPT, PREPARE_SCRIPT, READ_SCRIPT } from "../../provider/resources/tunnel/scripts";
import { START_CAPTURE_SCRIPT, STOP_CAPTURE_SCRIPT } from "../../provider/backends/conntrackSh";

describe("SH_PRELUDE", () => {
  it("starts with the root check", () => {
    assert.match(SH_PRELUDE, /^if \[ "\$\(id -u\)" != 0 \]; then\n/);
  });

  it("starts every script that is sent without Host.run", () => {
    const scripts = { APPLY_HEAD, DELETE_SCRIPT, PREPARE_SCRIPT, READ_SCRIPT, START_CAPTURE_SCRIPT, STOP_CAPTURE_SCRIPT };
    for (const [name, s] of Object.entries(scripts)) assert.ok(s.startsWith(SH_PRELUDE), `${name} does not start with SH_PRELUDE`);
  });
});
