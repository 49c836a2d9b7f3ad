// Preload (`node --require`) for a process whose loaded modules a test wants to see: appends one
// line per module file the process loads, "<file>\t<the file that required it>", to the file named
// by NATGATE_LOAD_LOG, as it loads it, so the log is complete at any moment while the process runs.
"use strict";
const fs = require("fs");
const Module = require("module");

const target = process.env.NATGATE_LOAD_LOG;
if (target) {
  const fd = fs.openSync(target, "a");
  const load = Module.prototype.load;
  Module.prototype.load = function (filename) {
    // `parent` is documentation-deprecated, still set by Node 20's loader; only a diagnostic here.
    const parent = (this.parent && this.parent.filename) || "";
    fs.writeSync(fd, `${filename}\t${parent}\n`);
    return load.call(this, filename);
  };
}
