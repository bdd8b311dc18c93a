// Copies the data files both shippers read into the build, so the NodeJS and Python
// shippers price invocations from the same rows (../shipper/prices.json) and bucket
// histograms by the same bounds (../faaslens/histogram_buckets.json).
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const targetDir = join(here, "..", "dist", "src");
mkdirSync(targetDir, { recursive: true });
for (const source of [["shipper", "prices.json"], ["faaslens", "histogram_buckets.json"]]) {
  copyFileSync(join(here, "..", "..", ...source), join(targetDir, source[1]));
}
