//! Prints the CustomResourceDefinitions of weir as YAML.
use kube::CustomResourceExt;
fn main() {
    for crd in [weir_crds::Route::crd(), weir_crds::Plugin::crd()] {
        print!("---\n{}", serde_yaml_ng::to_string(&crd).unwrap());
    }
}
