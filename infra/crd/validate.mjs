// Validate custom resources against their CRDs' schemas, as compiled by kubernetes-models.
// stdin: a JSON array of manifests. stdout: a JSON array, one entry each:
//   {"known": false} when no schema is bundled for the apiVersion/kind, else {"known": true, "error": null | "..."}.
import { readFileSync } from "node:fs";
import * as cnpg from "@kubernetes-models/cloudnative-pg/postgresql.cnpg.io/v1";
import * as monitoringV1 from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import * as monitoringV1alpha1 from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1alpha1";

const models = {
  "postgresql.cnpg.io/v1": cnpg,
  "monitoring.coreos.com/v1": monitoringV1,
  "monitoring.coreos.com/v1alpha1": monitoringV1alpha1,
};
const manifests = JSON.parse(readFileSync(0, "utf8"));
const results = manifests.map((manifest) => {
  const Model = (models[manifest.apiVersion] || {})[manifest.kind];
  if (typeof Model !== "function") return { known: false };
  try {
    new Model(manifest).validate();
    return { known: true, error: null };
  } catch (error) {
    return { known: true, error: String(error.message || error) };
  }
});
process.stdout.write(JSON.stringify(results));
