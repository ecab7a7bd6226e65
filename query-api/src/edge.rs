//! GraphQL's edge: an argument, variable or variable default holding text that Postgres cannot
//! store (NUL) is refused before any resolver runs, with `BAD_USER_INPUT` naming it.

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult, Value, Variables};
use std::sync::Arc;

use crate::schema::coded_error;

/// Installs [`StorableText`] on a schema.
pub struct StorableTextCheck;

impl ExtensionFactory for StorableTextCheck {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(StorableText)
    }
}

struct StorableText;

fn unstorable(value: &Value) -> bool {
    match value {
        Value::String(s) => !infra::edge::storable(s),
        Value::List(items) => items.iter().any(unstorable),
        Value::Object(fields) => fields
            .iter()
            .any(|(key, item)| !infra::edge::storable(key) || unstorable(item)),
        _ => false,
    }
}

/// The first argument, in `selection` or below, whose literal holds unstorable text.
fn unstorable_argument(set: &SelectionSet) -> Option<(String, async_graphql::Pos)> {
    set.items.iter().find_map(|item| match &item.node {
        Selection::Field(field) => field
            .node
            .arguments
            .iter()
            .find_map(|(name, value)| {
                let literal = value
                    .node
                    .clone()
                    .into_const_with(|_| Ok::<_, ()>(Value::Null));
                literal
                    .ok()
                    .filter(unstorable)
                    .map(|_| (name.node.to_string(), name.pos))
            })
            .or_else(|| unstorable_argument(&field.node.selection_set.node)),
        Selection::InlineFragment(fragment) => {
            unstorable_argument(&fragment.node.selection_set.node)
        }
        // Fragment definitions are checked once each, below.
        Selection::FragmentSpread(_) => None,
    })
}

fn refusal(what: String, pos: async_graphql::Pos) -> ServerError {
    coded_error(
        "BAD_USER_INPUT",
        format!("{what}: text must not contain NUL (U+0000)"),
    )
    .into_server_error(pos)
}

#[async_trait::async_trait]
impl Extension for StorableText {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if let Some((name, _)) = variables.iter().find(|(_, value)| unstorable(value)) {
            return Err(refusal(
                format!("variable `${name}`"),
                async_graphql::Pos::default(),
            ));
        }
        let document = next.run(ctx, query, variables).await?;
        // A variable's default stands in for the value a client did not send, so it is input
        // too (it reached the read model unchecked before).
        let defaults = document.operations.iter().flat_map(|(_, op)| {
            op.node
                .variable_definitions
                .iter()
                .filter_map(|definition| {
                    let default = definition.node.default_value.as_ref()?;
                    Some((&definition.node.name, default))
                })
        });
        for (name, default) in defaults {
            if unstorable(&default.node) {
                return Err(refusal(format!("variable `${}`", name.node), default.pos));
            }
        }
        let sets = document
            .operations
            .iter()
            .map(|(_, op)| &op.node.selection_set.node)
            .chain(
                document
                    .fragments
                    .values()
                    .map(|f| &f.node.selection_set.node),
            );
        for set in sets {
            if let Some((name, pos)) = unstorable_argument(set) {
                return Err(refusal(format!("argument `{name}`"), pos));
            }
        }
        Ok(document)
    }
}

/// Installs [`ErrorCodes`] on a schema.
pub struct ErrorCodesCheck;

impl ExtensionFactory for ErrorCodesCheck {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodes)
    }
}

/// Gives every error a code: those async-graphql raises itself (a query that does not parse or
/// validate, an argument out of its type's range) are the client's, `BAD_USER_INPUT`.
struct ErrorCodes;

#[async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn request(
        &self,
        ctx: &ExtensionContext<'_>,
        next: async_graphql::extensions::NextRequest<'_>,
    ) -> async_graphql::Response {
        let mut response = next.run(ctx).await;
        for error in &mut response.errors {
            let coded = error
                .extensions
                .as_ref()
                .is_some_and(|e| e.get("code").is_some());
            if !coded {
                error
                    .extensions
                    .get_or_insert_with(Default::default)
                    .set("code", "BAD_USER_INPUT");
            }
        }
        response
    }
}

/// Longest search text, in characters: a tsquery grows with its words, and no one types more.
pub const MAX_SEARCH_CHARS: usize = 256;

/// Refuses search text longer than [`MAX_SEARCH_CHARS`].
pub fn search_text(argument: &str, text: &str) -> async_graphql::Result<()> {
    if text.chars().count() > MAX_SEARCH_CHARS {
        return Err(coded_error(
            "BAD_USER_INPUT",
            format!("`{argument}` is longer than {MAX_SEARCH_CHARS} characters"),
        ));
    }
    Ok(())
}

/// The one rule for `first`: absent means `default`; otherwise 1 to `max`, or an error.
pub fn page_size(first: Option<i32>, default: i64, max: i64) -> async_graphql::Result<i64> {
    match first.map(i64::from) {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(coded_error(
            "BAD_USER_INPUT",
            format!("`first` is 1 to {max}, not {n}"),
        )),
    }
}
