// Copies the shared price table (../shipper/prices.json) into the build, so the NodeJS
// and Python shippers price invocations from the same rows.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const source = join(here, "..", "..", "shipper", "prices.json");
const target = join(here, "..", "dist", "src", "prices.json");
mkdirSync(dirname(target), { recursive: true });
copyFileSync(source, target);
