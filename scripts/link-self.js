#!/usr/bin/env node
// Makes `require("natgate/...")` resolve to this checkout.
//
// A serialized dynamic provider is revived by Pulumi's dynamic-provider server with
// require-from-string, whose module lookup starts at the server's working directory. In a user's
// project natgate sits in node_modules; in this repository the package is the repository itself,
// so node_modules/natgate must point back at the root. Safe to run any number of times.
"use strict";
const fs = require("fs");
const path = require("path");

const root = path.resolve(__dirname, "..");
const link = path.join(root, "node_modules", "natgate");

function linkSelf() {
  fs.mkdirSync(path.dirname(link), { recursive: true });
  let existing;
  try {
    existing = fs.lstatSync(link);
  } catch (e) {
    if (e.code !== "ENOENT") throw e;
  }
  if (existing) {
    if (existing.isSymbolicLink() && fs.realpathSync(link) === fs.realpathSync(root)) return false;
    if (!existing.isSymbolicLink()) {
      // A real directory here is an installed copy of natgate; replacing it silently would hide
      // which code the tests run, so stop and say how to fix it.
      throw new Error(`${link} exists and is not a symlink; remove it and run scripts/link-self.js again`);
    }
    fs.unlinkSync(link);
  }
  // Relative target so the link survives moving or bind-mounting the checkout.
  fs.symlinkSync(path.relative(path.dirname(link), root) || ".", link, "dir");
  return true;
}

if (require.main === module) {
  const created = linkSelf();
  console.log(created ? `linked ${link} -> ${root}` : `${link} already points to ${root}`);
}

module.exports = { linkSelf };
