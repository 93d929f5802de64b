//! The newest contract's operations of one linked component, found once and type-checked once.
//!
//! The generated `RefundPluginPre::instantiate_async` looks up and type-checks every export of
//! the provider interface for each new instance (five functions, their records and variants):
//! about a tenth of a fresh operation. A compiled component's export types cannot change between
//! its instances, so here each operation's function is looked up by its index, found once when
//! the component is linked, and checked against the host's types the first time it is called;
//! later instances take the function as checked.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::Store;
use wasmtime::component::{
    ComponentExportIndex, ComponentNamedList, Instance, InstancePre, Lift, Lower, TypedFunc,
};

use crate::bindings::types::{
    ProviderInfo, Refund, RefundError, RefundLookup, RefundPage, RefundRequest, TimeRange,
    WebhookError, WebhookOutcome, WebhookRequest,
};
use crate::caps::PluginState;
use crate::observe::{Operation, OperationAnswer};

/// The operations as the contract names them ([`Operation::name`]), in the order of
/// [`Exports::funcs`].
const OPERATIONS: [&str; 5] = [
    "describe",
    "create-refund",
    "get-refund",
    "list-refunds",
    "parse-webhook",
];

/// Where each operation's function is in one component, and whether its type was checked.
pub(crate) struct Exports {
    funcs: [Export; 5],
}

struct Export {
    index: ComponentExportIndex,
    /// Set once a call checked the function's type against the host's.
    checked: AtomicBool,
}

impl Exports {
    /// Finds the operations in the provider interface `interface` (the newest contract's name
    /// for it) of the component of `pre`; `None` if one is missing (the generated bindings, built
    /// first, report which).
    pub(crate) fn find(pre: &InstancePre<PluginState>, interface: &str) -> Option<Arc<Self>> {
        let component = pre.component();
        let interface = component.get_export_index(None, interface)?;
        let mut funcs = Vec::with_capacity(OPERATIONS.len());
        for name in OPERATIONS {
            funcs.push(Export {
                index: component.get_export_index(Some(&interface), name)?,
                checked: AtomicBool::new(false),
            });
        }
        Some(Arc::new(Self {
            funcs: funcs.try_into().ok()?,
        }))
    }

    /// Runs `op` on `instance`, an instance of this component.
    pub(crate) async fn call(
        &self,
        instance: &Instance,
        store: &mut Store<PluginState>,
        op: Operation<'_>,
    ) -> wasmtime::Result<OperationAnswer> {
        Ok(match op {
            Operation::Describe => {
                let (info,) = self
                    .func::<(), (ProviderInfo,)>(op, instance, store)?
                    .call_async(&mut *store, ())
                    .await?;
                OperationAnswer::Info(info)
            }
            Operation::CreateRefund(req) => {
                type F<'a> = TypedFunc<(&'a RefundRequest,), (Result<Refund, RefundError>,)>;
                let f: F<'_> = self.func(op, instance, store)?;
                OperationAnswer::Refund(f.call_async(&mut *store, (req,)).await?.0)
            }
            Operation::GetRefund(lookup, original) => {
                type F<'a> =
                    TypedFunc<(&'a RefundLookup, Option<&'a str>), (Result<Refund, RefundError>,)>;
                let f: F<'_> = self.func(op, instance, store)?;
                let args = (lookup, original);
                OperationAnswer::Refund(f.call_async(&mut *store, args).await?.0)
            }
            Operation::ListRefunds(range, cursor) => {
                type F<'a> =
                    TypedFunc<(TimeRange, Option<&'a str>), (Result<RefundPage, RefundError>,)>;
                let f: F<'_> = self.func(op, instance, store)?;
                let args = (*range, cursor);
                OperationAnswer::Page(f.call_async(&mut *store, args).await?.0)
            }
            Operation::ParseWebhook(req) => {
                type F<'a> =
                    TypedFunc<(&'a WebhookRequest,), (Result<WebhookOutcome, WebhookError>,)>;
                let f: F<'_> = self.func(op, instance, store)?;
                OperationAnswer::Webhook(f.call_async(&mut *store, (req,)).await?.0)
            }
        })
    }

    /// The function of `op` on `instance`, typed: checked the first time, then taken as checked.
    fn func<P, R>(
        &self,
        op: Operation<'_>,
        instance: &Instance,
        store: &mut Store<PluginState>,
    ) -> wasmtime::Result<TypedFunc<P, R>>
    where
        P: ComponentNamedList + Lower,
        R: ComponentNamedList + Lift,
    {
        let name = op.name();
        let export = OPERATIONS
            .iter()
            .position(|&n| n == name)
            .map(|n| &self.funcs[n])
            .ok_or_else(|| wasmtime::format_err!("`{name}` is no operation of the contract"))?;
        if !export.checked.load(Ordering::Acquire) {
            let typed = instance.get_typed_func::<P, R>(&mut *store, &export.index)?;
            export.checked.store(true, Ordering::Release);
            return Ok(typed);
        }
        let func = instance
            .get_func(&mut *store, export.index)
            .ok_or_else(|| wasmtime::format_err!("`{name}` is not a function"))?;
        // SAFETY: `P` and `R` are fixed per operation (`call` above), and this operation's
        // function in this component was checked against them by an earlier call
        // (`get_typed_func`). `instance` is an instance of the same compiled component, whose
        // export types are the component's and cannot differ between instances; this is what
        // the generated bindings do with the functions they check once per instance.
        Ok(unsafe { TypedFunc::new_unchecked(func) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::component::PluginComponent;
    use crate::engine::Engine;
    use crate::error::LoadError;
    use crate::plugin::Plugin;

    /// A component exporting the newest provider interface with every operation of the type
    /// `func() -> u32`: it links (the names are right), and no operation can be called.
    fn mistyped() -> Vec<u8> {
        let ops = [
            "describe",
            "create-refund",
            "get-refund",
            "list-refunds",
            "parse-webhook",
        ];
        let exports: String = ops
            .iter()
            .map(|op| format!(r#"(export "{op}" (func $f)) "#))
            .collect();
        wat::parse_str(format!(
            r#"(component
                (core module $m (func (export "f") (result i32) i32.const 7))
                (core instance $i (instantiate $m))
                (func $f (result u32) (canon lift (core func $i "f")))
                (instance $provider {exports})
                (export "refundry:provider/provider@0.2.0" (instance $provider)))"#
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn an_operation_of_another_type_is_refused_at_every_call_not_only_the_first() {
        let engine = Engine::new(Default::default()).unwrap();
        let component = Arc::new(PluginComponent::compile(&engine, &mistyped()).unwrap());
        for call in 1..=3 {
            let err = Plugin::inspect(engine.clone(), component.clone())
                .await
                .err()
                .expect("a describe() of the wrong type cannot answer");
            let message = err.to_string();
            assert!(
                matches!(err, LoadError::Describe(_))
                    && message.contains("failed to convert function to given type"),
                "call {call}: {message}"
            );
        }
    }
}
