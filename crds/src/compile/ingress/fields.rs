//! The way back from a translated Route's field paths to its Ingress's, so that what the
//! compiler says about `spec.rules[3].backends[0].name` reaches the user as
//! `spec.rules[0].http.paths[2].backend.service.name`.

/// Field paths of one translated Route, as its Ingress's.
#[derive(Clone, Debug, Default)]
pub(crate) struct FieldMap {
    /// The Ingress field of the host (`spec.rules[i].host`).
    pub host: String,
    /// The Ingress field of the TLS Secret, when the host has one.
    pub tls: Option<String>,
    /// The Ingress field each Route rule came from (a path, `spec.defaultBackend`, or an
    /// annotation), by rule index.
    pub rules: Vec<String>,
}

impl FieldMap {
    /// The Ingress field for a field of the translated Route.
    pub(crate) fn ingress_field(&self, field: &str) -> String {
        if let Some(rest) = field.strip_prefix("spec.rules[")
            && let Some((index, rest)) = rest.split_once(']')
            && let Some(origin) = index.parse::<usize>().ok().and_then(|i| self.rules.get(i))
        {
            if origin.starts_with("metadata.") {
                return origin.clone();
            }
            return format!("{origin}{}", path_part(rest));
        }
        if field.starts_with("spec.hosts") {
            return self.host.clone();
        }
        if field.starts_with("spec.tls") {
            return self.tls.clone().unwrap_or_else(|| "spec.tls".to_owned());
        }
        if field.starts_with("spec.plugins") {
            return format!(
                "metadata.annotations[{}]",
                super::annotations::PLUGINS_ANNOTATION
            );
        }
        if field.starts_with("spec.cors")
            || field.starts_with("spec.sourceRanges")
            || field.starts_with("spec.clientLimits")
        {
            return "metadata.annotations".to_owned();
        }
        "spec".to_owned()
    }
}

/// The part of an Ingress path's field a rule's sub-field stands for.
fn path_part(rest: &str) -> String {
    if let Some(backend) = rest.strip_prefix(".backends[") {
        let sub = backend.split_once(']').map_or("", |(_, sub)| sub);
        return match sub {
            ".name" => ".backend.service.name".to_owned(),
            ".port" => ".backend.service.port".to_owned(),
            _ => ".backend".to_owned(),
        };
    }
    if rest.starts_with(".matches") {
        return ".path".to_owned();
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_fields_are_named_as_the_ingress_names_them() {
        let map = FieldMap {
            host: "spec.rules[1].host".into(),
            tls: Some("spec.tls[0].secretName".into()),
            rules: vec![
                "metadata.annotations[nginx.ingress.kubernetes.io/app-root]".into(),
                "spec.rules[1].http.paths[2]".into(),
            ],
        };
        assert_eq!(
            map.ingress_field("spec.rules[1].backends[0].name"),
            "spec.rules[1].http.paths[2].backend.service.name"
        );
        assert_eq!(
            map.ingress_field("spec.rules[1].matches[0].path.value"),
            "spec.rules[1].http.paths[2].path"
        );
        assert_eq!(
            map.ingress_field("spec.rules[0].redirect"),
            "metadata.annotations[nginx.ingress.kubernetes.io/app-root]"
        );
        assert_eq!(map.ingress_field("spec.hosts"), "spec.rules[1].host");
        assert_eq!(
            map.ingress_field("spec.tls.secretName"),
            "spec.tls[0].secretName"
        );
        assert_eq!(
            map.ingress_field("spec.plugins[0].name"),
            "metadata.annotations[weir.dev/plugins]"
        );
    }
}
