// Validate custom resources against the JSON schemas generated from the operators' Go API types, as shipped by the
// npm packages @kubernetes-models/argo-rollouts and @kubernetes-models/prometheus-operator (ajv validators).
//   node validate_crds.mjs <node_modules dir> < objects.json      (a JSON array of objects)
// Prints a JSON array: one {kind, name, ok, error} per object whose kind it knows; exit 0 (the test judges).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const MODELS = {
  "argoproj.io/v1alpha1": ["@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1", ["Rollout", "AnalysisTemplate"]],
  "monitoring.coreos.com/v1": ["@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
                               ["ServiceMonitor", "PrometheusRule"]],
};

const nodeModules = process.argv[2];
const objects = JSON.parse(readFileSync(0, "utf8"));
const out = [];
for (const obj of objects) {
  const entry = MODELS[obj.apiVersion];
  if (!entry || !entry[1].includes(obj.kind)) continue;
  const url = pathToFileURL(join(nodeModules, entry[0], `${obj.kind}.js`)).href;
  const Model = (await import(url))[obj.kind];
  try {
    new Model(obj).validate();
    out.push({ kind: obj.kind, name: obj.metadata?.name, ok: true, error: null });
  } catch (err) {
    out.push({ kind: obj.kind, name: obj.metadata?.name, ok: false, error: String(err.message ?? err) });
  }
}
process.stdout.write(JSON.stringify(out));
