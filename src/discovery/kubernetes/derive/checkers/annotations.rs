//! Annotations as the health-check rules read them: from the Service, or from the Service then an
//! Ingress (the AWS Load Balancer Controller merges them, the Service's winning —
//! `pkg/algorithm/maps.go` `MergeStringMap` called in `pkg/ingress/model_build_target_group.go`).
//! Every bad value becomes a [`Note`] naming the annotation, the value and the default used.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;

use super::super::super::cluster::{annotations, ObjectRef};
use super::super::{Note, Origin};
use super::check::{duration, Part};

/// Who reads a bad annotation value, for the note's consequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reader {
    /// A cloud controller: it rejects the Service and keeps the old health check.
    Controller,
    /// parallax (`parallax.io/check-*`): it ignores the value.
    Parallax,
}

/// The annotations of one object, or of a Service then an Ingress (first wins).
#[derive(Debug, Clone)]
pub(super) struct Annotations<'a> {
    /// Each map, the object it belongs to, and whether that object is not the Service itself.
    maps: Vec<(&'a BTreeMap<String, String>, ObjectRef, bool)>,
    /// Who reads them: values' origins and bad values' notes say so.
    reader: Reader,
}

impl<'a> Annotations<'a> {
    /// The Service's annotations.
    pub(super) fn of_service(service: &'a Service) -> Annotations<'a> {
        Annotations {
            maps: vec![(annotations(&service.metadata), ObjectRef::of("Service", &service.metadata), false)],
            reader: Reader::Controller,
        }
    }

    /// The Service's annotations, then the Ingress's.
    pub(super) fn merged(service: &'a Service, ingress: &'a Ingress) -> Annotations<'a> {
        let mut merged = Annotations::of_service(service);
        merged.maps.push((annotations(&ingress.metadata), ObjectRef::of("Ingress", &ingress.metadata), true));
        merged
    }

    /// The same annotations, read by `reader` (a controller by default).
    pub(super) fn read_by(mut self, reader: Reader) -> Annotations<'a> {
        self.reader = reader;
        self
    }

    /// The value of `key`, trimmed.
    pub(super) fn get(&self, key: &str) -> Option<&'a str> {
        self.find(key).map(|(value, _)| value)
    }

    fn find(&self, key: &str) -> Option<(&'a str, Origin)> {
        self.maps.iter().find_map(|(map, object, foreign)| {
            let value = map.get(key)?.trim();
            let name = if *foreign { format!("{key} on {object}") } else { key.to_owned() };
            Some((value, Origin::Annotation(name)))
        })
    }

    /// The value of `key` as a string, its origin the annotation (or the override), else `default`.
    pub(super) fn string(&self, key: &str, default: Part<String>) -> Part<String> {
        match self.find(key) {
            Some((value, origin)) if !value.is_empty() => {
                Part::new(value.to_owned(), retag(origin, self.reader))
            }
            _ => default,
        }
    }

    /// A whole number of seconds from `key` (as milliseconds), else `default`.
    pub(super) fn seconds(&self, key: &str, default: Part<u64>, notes: &mut Vec<Note>) -> Part<u64> {
        let shown = duration(default.value);
        let expected = "a whole number of seconds (e.g. 10)";
        self.parsed(key, default, expected, &shown, notes, |raw| {
            raw.parse::<u64>().ok().filter(|s| *s > 0).map(|s| s * 1000)
        })
    }

    /// A count of 1 or more from `key`, else `default`.
    pub(super) fn count(&self, key: &str, default: Part<u64>, notes: &mut Vec<Note>) -> Part<u64> {
        let shown = default.value.to_string();
        self.parsed(key, default, "a whole number of 1 or more", &shown, notes, |raw| {
            raw.parse::<u64>().ok().filter(|n| *n > 0)
        })
    }

    /// `key` parsed by `parse`, its origin the annotation; `default` when absent, and when bad
    /// with a note naming the annotation, the bad value and the default used.
    pub(super) fn parsed<T>(
        &self,
        key: &str,
        default: Part<T>,
        expected: &str,
        shown_default: &str,
        notes: &mut Vec<Note>,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Part<T> {
        let Some((raw, origin)) = self.find(key) else { return default };
        if let Some(value) = parse(raw) {
            return Part::new(value, retag(origin, self.reader));
        }
        let object = self.object_with(key);
        notes.push(Note { object, message: bad_value(key, raw, expected, shown_default, self.reader) });
        default
    }

    fn object_with(&self, key: &str) -> ObjectRef {
        let found = self.maps.iter().find(|(map, _, _)| map.contains_key(key));
        found.or(self.maps.first()).map(|(_, object, _)| object.clone()).unwrap_or(ObjectRef {
            kind: "Service",
            namespace: String::new(),
            name: String::new(),
        })
    }
}

fn retag(origin: Origin, reader: Reader) -> Origin {
    match (origin, reader) {
        (Origin::Annotation(name), Reader::Parallax) => Origin::Override(name),
        (origin, _) => origin,
    }
}

/// The note for a bad annotation value: what was seen, what happens, what parallax uses.
pub(super) fn bad_value(key: &str, raw: &str, expected: &str, shown_default: &str, reader: Reader) -> String {
    match reader {
        Reader::Controller => format!(
            "annotation {key} = {raw:?} is not {expected}: the controller rejects it and keeps the load \
             balancer's previous health check (see the Service's events); parallax assumes the default \
             {shown_default}; fix the annotation"
        ),
        Reader::Parallax => format!(
            "annotation {key} = {raw:?} is not {expected}: parallax ignores it and keeps {shown_default}; \
             fix the annotation"
        ),
    }
}
