//! Query parameters, decoded as kube-apiserver decodes them into `ListOptions` and
//! `DeleteOptions`, so every client's spelling means here what it means on a real cluster.

use std::collections::HashMap;

/// The parameters of a query string. A name given twice keeps its first value, as Go's
/// conversions read `values[0]`.
pub fn parse(query: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        params.entry(name.into_owned()).or_insert_with(|| value.into_owned());
    }
    params
}

/// A boolean parameter that is present, by apimachinery's rule for query booleans
/// (`runtime.Convert_Slice_string_To_bool`, used for `watch`, `allowWatchBookmarks`,
/// `sendInitialEvents`...): `0` and `false` in any letter case are false, and every other
/// value, even an empty one, is true. Nothing is rejected. So the Python client's
/// `watch=True` opens a watch, as it does on a real server. (This is not Go's
/// `strconv.ParseBool`, which would refuse `yes` and treat `FaLsE` as an error.)
pub fn parse_bool(value: &str) -> bool {
    !(value == "0" || value.eq_ignore_ascii_case("false"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_follow_apimachinery() {
        for falsy in ["0", "false", "False", "FALSE", "fAlSe"] {
            assert!(!parse_bool(falsy), "{falsy:?} is false");
        }
        for truthy in ["1", "true", "True", "TRUE", "t", "T", "yes", "", "2", "00", " false"] {
            assert!(parse_bool(truthy), "{truthy:?} is true");
        }
    }

    #[test]
    fn first_value_wins_and_values_are_decoded() {
        let params = parse("watch=false&watch=true&labelSelector=app%3Dweb%2Ctier+in+(a)&flag");
        assert_eq!(params["watch"], "false");
        assert_eq!(params["labelSelector"], "app=web,tier in (a)");
        assert_eq!(params["flag"], "");
        assert!(parse_bool(&params["flag"]), "a bare name is true");
    }
}
