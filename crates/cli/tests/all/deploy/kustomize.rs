//! deploy/kubernetes (the Kustomize base) and deploy/overlays/example: both
//! render, the way `kustomize build` does for what they use (resources, a
//! namespace, images, strategic-merge patches of name-keyed lists), to
//! manifests that pass a schema-style check: the fields each kind requires,
//! names Kubernetes accepts, quantities that parse, references that resolve
//! (Services to the pods' labels and ports, the RoleBinding to the Role and
//! ServiceAccount, env to Secrets), the restricted Pod Security Standard, and
//! the overlay's values where errand reads them.
//!
//! Where `kubectl` is installed (it embeds kustomize), its rendering must equal
//! this one; where it is not, that comparison is reported as not run (kubectl,
//! helm, kustomize and kubeconform are not in the registries the test machines
//! reach).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml_doc(path: &Path) -> Value {
    let mut docs = yaml_docs(path);
    assert_eq!(docs.len(), 1, "{}: one document", path.display());
    docs.remove(0)
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Lists whose items are all objects with a `name`: strategic merge's merge
/// key for the lists these patches touch (containers, env, ports, volumes).
fn named(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(|i| i["name"].is_string())
}

/// A strategic-merge patch: maps merge key by key (null deletes), name-keyed
/// lists merge item by item (the patch's items first, as kustomize orders
/// them), anything else is replaced.
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else if let Some(bv) = b.get_mut(k) {
                    merge(bv, v);
                } else {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        (Value::Array(b), Value::Array(p)) if named(p) && (b.is_empty() || named(b)) => {
            let mut out = Vec::new();
            for item in p {
                let mut merged = match b.iter().position(|x| x["name"] == item["name"]) {
                    Some(i) => b.remove(i),
                    None => json!({}),
                };
                merge(&mut merged, item);
                out.push(merged);
            }
            out.append(b);
            *b = out;
        }
        (b, p) => *b = p.clone(),
    }
}

fn id(d: &Value) -> (String, String, String) {
    (
        d["kind"].as_str().unwrap_or_default().to_string(),
        d["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        d["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// What `kustomize build dir` gives for the fields these kustomizations use.
fn render(dir: &Path) -> Vec<Value> {
    let k = yaml_doc(&dir.join("kustomization.yaml"));
    assert_eq!(k["kind"], "Kustomization");
    let known: BTreeSet<&str> = [
        "apiVersion",
        "kind",
        "resources",
        "namespace",
        "images",
        "patches",
    ]
    .into();
    for key in k.as_object().expect("a map").keys() {
        assert!(
            known.contains(key.as_str()),
            "{}: `{key}` is not rendered by this test",
            dir.display()
        );
    }
    let mut docs = Vec::new();
    for r in strs(&k["resources"]) {
        let p = dir.join(&r);
        if p.is_dir() {
            docs.extend(render(&p));
        } else {
            docs.extend(yaml_docs(&p));
        }
    }
    for p in k["patches"].as_array().into_iter().flatten() {
        let path = p["path"].as_str().expect("patches: path only");
        let patch = yaml_doc(&dir.join(path));
        let target: Vec<usize> = (0..docs.len())
            .filter(|&i| id(&docs[i]) == id(&patch) && docs[i]["apiVersion"] == patch["apiVersion"])
            .collect();
        assert_eq!(target.len(), 1, "{path}: no single target {:?}", id(&patch));
        merge(&mut docs[target[0]], &patch);
    }
    if let Some(ns) = k["namespace"].as_str() {
        for d in &mut docs {
            if d["kind"] == "Namespace" {
                d["metadata"]["name"] = json!(ns);
            } else {
                d["metadata"]["namespace"] = json!(ns);
            }
            if d["kind"] == "RoleBinding" {
                for s in d["subjects"].as_array_mut().into_iter().flatten() {
                    if s["kind"] == "ServiceAccount" {
                        s["namespace"] = json!(ns);
                    }
                }
            }
        }
    }
    for img in k["images"].as_array().into_iter().flatten() {
        let name = img["name"].as_str().expect("images: name");
        for d in &mut docs {
            // pointer_mut: indexing a Value mutably would insert nulls into other kinds.
            let containers = d.pointer_mut("/spec/template/spec/containers");
            for c in containers
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                let image = c["image"].as_str().unwrap_or_default().to_string();
                let (repo, tag) = image.split_once(':').unwrap_or((&image, ""));
                if repo == name {
                    let repo = img["newName"].as_str().unwrap_or(repo);
                    let tag = img["newTag"].as_str().unwrap_or(tag);
                    c["image"] = json!(format!("{repo}:{tag}"));
                }
            }
        }
    }
    docs
}

/// Name-keyed lists sorted by name: kustomize and this renderer may order them differently.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
        }
        Value::Array(a) => {
            let mut a: Vec<Value> = a.iter().map(canonical).collect();
            if named(&a) {
                a.sort_by(|x, y| x["name"].as_str().cmp(&y["name"].as_str()));
            }
            Value::Array(a)
        }
        v => v.clone(),
    }
}

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A Kubernetes quantity: a decimal number with an optional binary or decimal suffix.
fn quantity(v: &Value) -> bool {
    let s = match v {
        Value::String(s) => s.as_str(),
        Value::Number(_) => return true,
        _ => return false,
    };
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &s[digits.len()..];
    ["", "m", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"].contains(&suffix)
        && !digits.is_empty()
        && digits.parse::<f64>().is_ok()
}

/// The checks a schema validator (kubeconform) and the API server's
/// admission would make on these kinds, plus the references between them.
fn validate(docs: &[Value], ns: &str) {
    let kinds = [
        ("Namespace", "v1"),
        ("ServiceAccount", "v1"),
        ("Role", "rbac.authorization.k8s.io/v1"),
        ("RoleBinding", "rbac.authorization.k8s.io/v1"),
        ("Service", "v1"),
        ("PersistentVolumeClaim", "v1"),
        ("Deployment", "apps/v1"),
    ];
    let mut seen = BTreeSet::new();
    for d in docs {
        let (kind, dns, name) = id(d);
        let api = kinds
            .iter()
            .find(|(k, _)| *k == kind)
            .unwrap_or_else(|| panic!("an unexpected kind {kind}"))
            .1;
        assert_eq!(d["apiVersion"], api, "{kind}/{name}");
        assert!(dns_label(&name), "{kind} name {name:?}");
        if kind == "Namespace" {
            assert_eq!(name, ns);
        } else {
            assert_eq!(dns, ns, "{kind}/{name} is not in {ns}");
        }
        assert!(
            seen.insert((kind.clone(), name.clone())),
            "{kind}/{name} twice"
        );
    }
    for (k, _) in kinds {
        assert!(seen.iter().any(|(kind, _)| kind == k), "no {k}");
    }
    let find = |kind: &str| -> Vec<&Value> { docs.iter().filter(|d| d["kind"] == kind).collect() };

    let deploy = find("Deployment")[0];
    let template = &deploy["spec"]["template"];
    let labels = template["metadata"]["labels"]
        .as_object()
        .expect("template labels");
    for (k, v) in deploy["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("selector")
    {
        assert_eq!(
            labels.get(k),
            Some(v),
            "the selector does not select the pods"
        );
    }
    let pod = &template["spec"];
    let sa = pod["serviceAccountName"]
        .as_str()
        .expect("serviceAccountName");
    assert!(
        seen.contains(&("ServiceAccount".into(), sa.into())),
        "no ServiceAccount {sa}"
    );
    // Restricted Pod Security Standard (the namespace enforces it).
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let volumes: BTreeSet<&str> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| v["name"].as_str().expect("volume name"))
        .collect();
    for v in pod["volumes"].as_array().into_iter().flatten() {
        if let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() {
            assert!(
                seen.contains(&("PersistentVolumeClaim".into(), claim.into())),
                "no claim {claim}"
            );
        }
    }
    let mut port_names = BTreeSet::new();
    for c in pod["containers"].as_array().expect("containers") {
        let cname = c["name"].as_str().expect("container name");
        assert!(dns_label(cname));
        let image = c["image"].as_str().expect("image");
        assert!(
            image.contains(':') && !image.ends_with(':'),
            "image {image:?} has no tag"
        );
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{cname}");
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{cname}");
        for p in c["ports"].as_array().into_iter().flatten() {
            let pn = p["name"].as_str().expect("port name");
            assert!(pn.len() <= 15 && dns_label(pn), "port name {pn:?}");
            assert!(p["containerPort"]
                .as_u64()
                .is_some_and(|n| (1..65536).contains(&n)));
            port_names.insert(pn.to_string());
        }
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let v = m["name"].as_str().expect("volumeMount name");
            assert!(volumes.contains(v), "mount of an unknown volume {v}");
        }
        for e in c["env"].as_array().expect("env") {
            let en = e["name"].as_str().expect("env name");
            assert!(
                e["value"].is_string() ^ e["valueFrom"].is_object(),
                "env {en}: exactly one of a string value or valueFrom: {e}"
            );
            if let Some(r) = e["valueFrom"]["secretKeyRef"].as_object() {
                assert!(
                    r["name"].is_string() && r["key"].is_string(),
                    "env {en}: {e}"
                );
            }
        }
        for (section, limits) in c["resources"].as_object().into_iter().flatten() {
            assert!(
                ["requests", "limits"].contains(&section.as_str()),
                "resources.{section}"
            );
            for (r, q) in limits.as_object().expect("a map") {
                assert!(quantity(q), "resources.{section}.{r} = {q}");
            }
        }
        let probe = &c["readinessProbe"]["httpGet"];
        if let Some(p) = probe["port"].as_str() {
            assert!(port_names.contains(p), "the probe's port {p}");
        }
    }
    for s in find("Service") {
        for (k, v) in s["spec"]["selector"].as_object().expect("selector") {
            assert_eq!(
                labels.get(k),
                Some(v),
                "Service {} selects no pod",
                s["metadata"]["name"]
            );
        }
        for p in s["spec"]["ports"].as_array().expect("ports") {
            let t = p["targetPort"].as_str().expect("a named targetPort");
            assert!(port_names.contains(t), "Service targetPort {t}");
        }
    }
    let binding = find("RoleBinding")[0];
    let role = binding["roleRef"]["name"].as_str().expect("roleRef");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert!(seen.contains(&("Role".into(), role.into())));
    for s in binding["subjects"].as_array().expect("subjects") {
        assert_eq!(s["kind"], "ServiceAccount");
        assert_eq!(
            s["namespace"], ns,
            "the binding's subject is in another namespace"
        );
        assert!(seen.contains(&(
            "ServiceAccount".into(),
            s["name"].as_str().expect("subject").into()
        )));
    }
    let claim = find("PersistentVolumeClaim")[0];
    assert!(quantity(&claim["spec"]["resources"]["requests"]["storage"]));
    assert!(!strs(&claim["spec"]["accessModes"]).is_empty());
}

/// The Deployment's env value of `name`.
fn env<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    let d = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env {name}"))
}

/// `kubectl kustomize dir`, where kubectl is installed.
fn kubectl_kustomize(dir: &Path) -> Option<Vec<Value>> {
    let out = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!(
                "not run: kubectl kustomize {} (kubectl: {e})",
                dir.display()
            );
            return None;
        }
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout)).expect("kubectl's YAML"),
    )
}

fn same_as_kubectl(dir: &Path, mine: &[Value]) {
    let Some(theirs) = kubectl_kustomize(dir) else {
        return;
    };
    let key = |v: &Vec<Value>| {
        let mut v: Vec<Value> = v.iter().map(canonical).collect();
        v.sort_by_key(id);
        v
    };
    let (a, b) = (key(&mine.to_vec()), key(&theirs));
    assert_eq!(
        a.len(),
        b.len(),
        "{}: a different number of objects",
        dir.display()
    );
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            x,
            y,
            "{}: this rendering and kubectl's differ",
            dir.display()
        );
    }
}

#[test]
fn the_base_renders_to_valid_manifests() {
    let dir = super::deploy_dir().join("kubernetes");
    let docs = render(&dir);
    validate(&docs, "errand");
    // Every manifest of the directory is in the base.
    let listed = strs(&yaml_doc(&dir.join("kustomization.yaml"))["resources"]);
    for f in std::fs::read_dir(&dir).expect("read deploy/kubernetes") {
        let name = f.expect("entry").file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            assert!(
                listed.contains(&name),
                "{name} is not in the base's resources"
            );
        }
    }
    same_as_kubectl(&dir, &docs);
}

#[test]
fn the_example_overlay_sets_its_values_where_errand_reads_them() {
    let dir = super::deploy_dir().join("overlays/example");
    let k = yaml_doc(&dir.join("kustomization.yaml"));
    let ns = k["namespace"]
        .as_str()
        .expect("the overlay sets a namespace");
    let docs = render(&dir);
    validate(&docs, ns);

    let deploy = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("Deployment");
    let c = &deploy["spec"]["template"]["spec"]["containers"][0];
    let img = &k["images"][0];
    assert_eq!(
        c["image"],
        format!(
            "{}:{}",
            img["newName"].as_str().expect("newName"),
            img["newTag"].as_str().expect("newTag")
        )
    );
    assert!(
        c["resources"]["limits"]["memory"].is_string(),
        "no memory limit"
    );
    assert!(
        c["resources"]["requests"]["cpu"].is_string(),
        "no cpu request"
    );
    // The sandbox namespace is errand's own, which the overlay set.
    assert_eq!(
        env(&docs, "ERRAND_SANDBOX_KUBERNETES_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    // Agent pods reach the git proxy by the headless Service in that namespace.
    let git = docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["spec"]["clusterIP"] == "None")
        .expect("the headless git Service");
    let port = git["spec"]["ports"][0]["port"].as_u64().expect("port");
    assert_eq!(
        env(&docs, "ERRAND_SANDBOX_KUBERNETES_GIT_PROXY_URL")["value"],
        format!(
            "http://{}.{ns}.svc.cluster.local:{port}",
            git["metadata"]["name"].as_str().expect("name")
        )
    );
    let agent = env(&docs, "ERRAND_SANDBOX_KUBERNETES_IMAGE")["value"]
        .as_str()
        .expect("agent image");
    assert!(
        agent.contains('/'),
        "the agent image {agent} is not from a registry"
    );
    // The database URL comes from a Secret, never a literal.
    let db = env(&docs, "ERRAND_DATABASE_URL");
    assert!(db["value"].is_null(), "a literal database URL");
    assert!(db["valueFrom"]["secretKeyRef"]["name"].is_string());
    // No Secret with data is in git.
    assert!(!docs.iter().any(|d| d["kind"] == "Secret"));
    same_as_kubectl(&dir, &docs);
}
