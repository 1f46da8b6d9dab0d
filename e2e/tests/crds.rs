//! The generated CRDs on a real API server: accepted, and refusing invalid objects.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use weir_e2e::{FIELD_MANAGER, TestNamespace, client_or_skip, install_crds};

#[tokio::test]
async fn crds_are_accepted_and_refuse_invalid_objects() {
    let Some(client) = client_or_skip("crds_are_accepted_and_refuse_invalid_objects").await else {
        return;
    };
    install_crds(&client).await;
    let namespace = TestNamespace::create(&client, "crds").await;
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("weir.dev", "v1alpha1", "Route"));
    let routes: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &namespace.name, &resource);
    let apply = |name: &str, spec: serde_json::Value| {
        let object = json!({"apiVersion": "weir.dev/v1alpha1", "kind": "Route", "metadata": {"name": name}, "spec": spec});
        let routes = routes.clone();
        let name = name.to_owned();
        async move {
            let object: DynamicObject = serde_json::from_value(object).unwrap();
            routes
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER),
                    &Patch::Apply(&object),
                )
                .await
        }
    };

    let good = apply(
        "good",
        json!({"hosts": ["a.example"], "rules": [{"directResponse": {"status": 200}}]}),
    )
    .await;
    assert!(good.is_ok(), "a valid Route is refused: {good:?}");

    let refused = [
        (
            "two-actions",
            json!({"rules": [{"directResponse": {"status": 200}, "redirect": {"host": "b.example"}}]}),
            "set exactly one of backends, redirect and directResponse",
        ),
        (
            "bad-enum",
            json!({"rules": [{"matches": [{"path": {"type": "Glob", "value": "/"}}], "directResponse": {"status": 200}}]}),
            "Unsupported value",
        ),
        (
            "bad-host",
            json!({"hosts": ["Not_A_Host"], "rules": [{"directResponse": {"status": 200}}]}),
            "should match",
        ),
    ];
    for (name, spec, expected) in refused {
        let result = apply(name, spec).await;
        let Err(kube::Error::Api(status)) = &result else {
            panic!("{name}: expected the API server to refuse it, got {result:?}");
        };
        assert_eq!(status.code, 422, "{name}: {status:?}");
        assert!(
            status.message.contains(expected),
            "{name}: {}",
            status.message
        );
    }
}
