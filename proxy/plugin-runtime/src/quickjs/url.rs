//! The WHATWG URL parser behind the `URL` global (`globals.js`): the `url` crate, which
//! implements the URL Standard, setters included, so plugins get the browsers' parsing
//! without a JavaScript copy of it.

use rquickjs::{Ctx, Function};
use serde_json::json;
use url::{Url, quirks};

/// `parse(input, base?, setter?, value?)`: the components of `input` (resolved against
/// `base`), after the setter named `setter` (`pathname`, `search`, …) was given `value`,
/// as JSON; `None` when `input` or `base` is not a URL. A setter refused by the standard
/// (a port of letters) leaves the URL as it was, as in browsers.
pub(super) fn parser<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Function<'js>> {
    Function::new(
        ctx.clone(),
        |input: String, base: Option<String>, setter: Option<String>, value: Option<String>| {
            let base = match base {
                Some(base) => Some(Url::parse(&base).ok()?),
                None => None,
            };
            let mut url = Url::options().base_url(base.as_ref()).parse(&input).ok()?;
            if let Some(setter) = setter {
                set(&mut url, &setter, &value.unwrap_or_default());
            }
            Some(components(&url))
        },
    )
}

fn set(url: &mut Url, setter: &str, value: &str) {
    // The standard's setters fail silently: the URL keeps its value.
    let _ = match setter {
        "href" => quirks::set_href(url, value).map_err(|_| ()),
        "protocol" => quirks::set_protocol(url, value),
        "username" => quirks::set_username(url, value),
        "password" => quirks::set_password(url, value),
        "host" => quirks::set_host(url, value),
        "hostname" => quirks::set_hostname(url, value),
        "port" => quirks::set_port(url, value),
        "pathname" => {
            quirks::set_pathname(url, value);
            Ok(())
        }
        "search" => {
            quirks::set_search(url, value);
            Ok(())
        }
        "hash" => {
            quirks::set_hash(url, value);
            Ok(())
        }
        _ => Err(()),
    };
}

fn components(url: &Url) -> String {
    json!({
        "href": quirks::href(url),
        "origin": quirks::origin(url),
        "protocol": quirks::protocol(url),
        "username": quirks::username(url),
        "password": quirks::password(url),
        "host": quirks::host(url),
        "hostname": quirks::hostname(url),
        "port": quirks::port(url),
        "pathname": quirks::pathname(url),
        "search": quirks::search(url),
        "hash": quirks::hash(url),
    })
    .to_string()
}
