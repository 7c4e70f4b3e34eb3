//! Token generation: the flow's graph builder, with the hidden checks whose trait bounds
//! let rustc verify every type, each spanned at the user's token; the flow's companion and
//! its `Task` impl as a subflow; and the stand-in emitted when the flow has errors.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Attribute, Expr, Ident, Token, Type, Visibility};

use super::parse::{BrokenSignature, FlowDecl};
use super::serving::Serving;
use super::steps::{Analysed, Arg, Call, Gate, Kind, Step, Tail};
use crate::task::{expr_text, type_text};

/// The flow's companion, which builds its graph; its `Task` impl as a subflow; and its
/// function.
pub(super) fn generate(flow: &FlowDecl, analysed: &Analysed, serving: &Serving) -> TokenStream {
    let p = private();
    let attrs = &flow.attrs;
    let vis = &flow.vis;
    let name = &flow.name;
    let fn_token = &flow.fn_token;
    let name_text = name.to_string();
    let description = doc_text(&flow.attrs);
    let out = output_type(flow);
    let companion = companion(&flow.vis, &flow.name);

    let mut body = declare_params(flow);
    body.extend(expand_steps(&analysed.steps, name));
    let finish = finish(flow, &analysed.tail);
    let subflow = subflow_task(flow);
    let registration = registration(flow);
    let serving = super::serving::expand(serving, flow, &p);
    // The graph is built by the companion, so that the subflow task reaches it through the
    // type (a function of the same name elsewhere cannot capture the call).
    quote! {
        #companion
        impl #name {
            #[doc(hidden)]
            #[allow(clippy::let_unit_value)]
            pub fn __tideflow_flow() -> ::tideflow::Flow<#out> {
                let mut __tideflow_b = #p::FlowBuilder::new(#name_text, #description);
                #body
                let __tideflow_flow: ::tideflow::Flow<#out> = { #finish };
                __tideflow_flow #serving
            }
        }
        #subflow
        #registration

        #(#attrs)*
        #vis #fn_token #name() -> ::tideflow::Flow<#out> {
            #name::__tideflow_flow()
        }
    }
}

/// Each parameter, declared on the builder with its default, which is checked against the
/// parameter's type at the default.
fn declare_params(flow: &FlowDecl) -> TokenStream {
    let name = &flow.name;
    let mut params = TokenStream::new();
    for param in &flow.params {
        let ident = &param.name;
        let ty = &param.ty;
        let ty_text = type_text(ty);
        let pname = ident.to_string();
        let Some(default) = &param.default else {
            // Required: declared without a default, checked like one with.
            let tspan = ty.span();
            let pt = p_at(tspan);
            let declare = quote_spanned! {tspan=>
                <#ty as #pt::FlowParam<#name>>::declare_required(&mut __tideflow_b, #pname, #ty_text)
            };
            params.extend(quote! {
                #[allow(unused_variables)]
                let #ident = #declare;
            });
            continue;
        };
        let dspan = default.span();
        let typed_default = quote_spanned! {dspan=> let __tideflow_default: #ty = #default; };
        let tspan = ty.span();
        let pt = p_at(tspan);
        let declare = quote_spanned! {tspan=>
            <#ty as #pt::FlowParam<#name>>::declare(&mut __tideflow_b, #pname, #ty_text, __tideflow_default)
        };
        params.extend(quote! {
            #[allow(unused_variables)]
            let #ident = {
                #typed_default
                #declare
            };
        });
    }
    params
}

/// The end of the graph: the flow's output, checked against its declared type at the
/// final step.
fn finish(flow: &FlowDecl, tail: &Tail) -> TokenStream {
    let p = private();
    let name = &flow.name;
    let out = output_type(flow);
    match tail {
        Tail::None => quote! { #p::FlowBuilder::finish::<()>(__tideflow_b, ::core::option::Option::None) },
        Tail::Value(arg) => {
            let span = arg.span();
            let ps = p_at(span);
            let value = whole_arg(arg, &quote!(#name));
            let output = match &flow.output {
                Some(_) => quote_spanned! {span=> <_ as #ps::FlowOutput<#out, #name>>::output(#value) },
                None => quote_spanned! {span=> <_ as #ps::NoOutput<#name>>::output(#value) },
            };
            quote! {
                let __tideflow_out = #output;
                #p::FlowBuilder::finish::<#out>(__tideflow_b, ::core::option::Option::Some(__tideflow_out))
            }
        }
    }
}

fn expand_steps(steps: &[Step], flow: &Ident) -> TokenStream {
    steps.iter().map(|step| expand_step(step, flow)).collect()
}

fn expand_step(step: &Step, flow: &Ident) -> TokenStream {
    let p = private();
    match step {
        Step::Call(call) => expand_call(call),
        Step::Gate(gate) => expand_gate(gate, flow),
        Step::Branch { steps, value: None } => {
            let body = expand_steps(steps, flow);
            quote! { { #body } }
        }
        Step::Branch {
            steps,
            value: Some((binding, arg)),
        } => {
            let body = expand_steps(steps, flow);
            let value = whole_arg(arg, &quote!(#flow));
            quote! {
                #[allow(unused_variables)]
                let #binding = { #body #value };
            }
        }
        Step::Merge(merge) => {
            let binding = &merge.binding;
            let name = &merge.name;
            let mut checks = TokenStream::new();
            if let Some((_, first, _)) = merge.parts.first() {
                // Every later branch gives the first branch's type, checked at its value
                // once both types are known.
                checks.extend(quote! { let __tideflow_first = #p::Arg::payload(&#first); });
                for (_, v, span) in &merge.parts[1..] {
                    let ps = p_at(*span);
                    checks.extend(quote_spanned! {*span=>
                        let #v = <_ as #ps::BranchValue<_, #flow>>::value(__tideflow_first, #v);
                    });
                }
            }
            let parts = merge.parts.iter().map(|(g, v, _)| quote!((#g, #v)));
            quote! {
                #[allow(unused_variables)]
                let #binding = {
                    #checks
                    #p::FlowBuilder::merge(&mut __tideflow_b, #name, ::std::vec![#(#parts),*])
                };
            }
        }
    }
}

/// A branch's gate; the first gate of an `if` checks that the condition is a `bool`.
fn expand_gate(gate: &Gate, flow: &Ident) -> TokenStream {
    let p = private();
    let span = gate.condition.span();
    let pc = p_at(span);
    let condition = match &gate.condition {
        Arg::Const(e) => {
            let text = expr_text(e);
            quote_spanned! {span=>
                let __tideflow_c: ::core::primitive::bool = #e;
                let __tideflow_c = #pc::constant(__tideflow_c, #text);
            }
        }
        arg => {
            let value = whole_arg(arg, &quote!(#flow));
            let check = if gate.check {
                quote_spanned! {span=> <_ as #pc::IfCondition<#flow>>::check(#pc::Arg::payload(&__tideflow_c)); }
            } else {
                TokenStream::new()
            };
            quote_spanned! {span=>
                let __tideflow_c = #value;
                #check
            }
        }
    };
    let binding = &gate.binding;
    let name = &gate.name;
    let text = &gate.text;
    let when = gate.when;
    let after = gate.after.iter().map(|g| quote!(#p::Dependency::node(&#g)));
    quote! {
        #[allow(unused_variables)]
        let #binding = {
            #condition
            #p::FlowBuilder::gate(&mut __tideflow_b, #name, __tideflow_c, #text, #when, ::std::vec![#(#after),*])
        };
    }
}

fn expand_call(call: &Call) -> TokenStream {
    let binding = &call.binding;
    let task = &call.task;
    let report = &call.report_name;
    let span = call.task_span();
    let mut args = TokenStream::new();
    let mut inputs = Vec::new();
    let mapped = call.map.is_some();
    for (i, arg) in call.args.iter().enumerate() {
        let a = format_ident!("__tideflow_a{}", i);
        let expected = expected(call, i);
        args.extend(if mapped {
            mapped_arg(&a, arg, &expected)
        } else {
            whole_checked(&a, arg, &expected)
        });
        let p = p_at(arg.span());
        inputs.push(quote_spanned!(arg.span()=> #p::Arg::into_input(#a)));
    }
    let after = call.after.iter().map(|d| {
        let p = p_at(d.span());
        quote_spanned! {d.span()=> #p::Dependency::node(&#d) }
    });
    let method = if mapped { quote!(map) } else { quote!(task) };
    let n = spanned_len(call.args.len(), span);
    // One obligation carries the arity, at the task's name: a wrong count is one error.
    let ps = p_at(span);
    let arity = quote_spanned! {span=>
        let _: #ps::PhantomData<<<__TideflowTask as #ps::Task>::Sig as #ps::Arity<#n, __TideflowTask>>::A0> = #ps::PhantomData;
    };
    let alias = quote_spanned! {span=> type __TideflowTask = #task; };
    // At the task's name too, so a non-task is reported once, there.
    let add = quote_spanned! {span=>
        #ps::FlowBuilder::#method::<__TideflowTask>(
            &mut __tideflow_b,
            #report,
            ::std::vec![#(#inputs),*],
            ::std::vec![#(#after),*],
        )
    };
    quote! {
        #[allow(unused_variables)]
        let #binding = {
            #alias
            #arity
            #args
            #add
        };
    }
}

/// The task's parameter type `index`, through the arity check (spanned at the task name).
fn expected(call: &Call, index: usize) -> TokenStream {
    let span = call.task_span();
    let p = p_at(span);
    let n = spanned_len(call.args.len(), span);
    let assoc = format_ident!("A{}", index, span = span);
    quote_spanned! {span=>
        <<__TideflowTask as #p::Task>::Sig as #p::Arity<#n, __TideflowTask>>::#assoc
    }
}

/// A `usize` literal at `span` (interpolating a number would put it at the macro call).
fn spanned_len(n: usize, span: Span) -> proc_macro2::Literal {
    let mut lit = proc_macro2::Literal::usize_unsuffixed(n);
    lit.set_span(span);
    lit
}

/// An argument of a non-mapped call (or inside `unmapped(..)`), checked against `expected`.
fn whole_checked(a: &Ident, arg: &Arg, expected: &TokenStream) -> TokenStream {
    let span = arg.span();
    let p = p_at(span);
    match arg {
        Arg::Unmapped(inner) => whole_checked(a, inner, expected),
        Arg::Const(e) => {
            let text = expr_text(e);
            quote_spanned! {span=>
                let #a: #expected = #e;
                let #a = #p::constant(#a, #text);
            }
        }
        Arg::Name(ident, Kind::Mapped) => quote_spanned! {span=>
            let #a = #p::reduce(&#ident);
            let __tideflow_fit =
                <_ as #p::MappedInput<#expected, __TideflowTask>>::check(#p::Arg::payload(&#a));
            <_ as #p::ReducedFits<#expected, __TideflowTask>>::check(__tideflow_fit);
        },
        Arg::Name(..) | Arg::Gather { .. } => {
            let value = whole_arg(arg, &quote_spanned!(span=> __TideflowTask));
            quote_spanned! {span=>
                let #a = #value;
                <_ as #p::TaskInput<#expected, __TideflowTask>>::check(#p::Arg::payload(&#a));
            }
        }
    }
}

/// An argument as one whole value (no check): a name, a mapped name collected into a
/// `Vec`, a gathered tuple or array, a constant.
fn whole_arg(arg: &Arg, tk: &TokenStream) -> TokenStream {
    let span = arg.span();
    let p = p_at(span);
    match arg {
        Arg::Name(ident, Kind::Single) => quote_spanned! {span=> #p::whole(&#ident) },
        Arg::Name(ident, Kind::Mapped) => quote_spanned! {span=> #p::collect(&#ident) },
        Arg::Unmapped(inner) => whole_arg(inner, tk),
        Arg::Const(e) => {
            let text = expr_text(e);
            quote_spanned! {span=> #p::constant(#e, #text) }
        }
        Arg::Gather {
            array: true, parts, ..
        } => {
            let f = format_ident!("gather{}", parts.len().clamp(1, 8), span = span);
            let parts = parts.iter().map(|part| whole_arg(part, tk));
            quote_spanned! {span=> <_ as #p::Uniform<#tk>>::array(#p::#f(#(#parts),*)) }
        }
        Arg::Gather {
            array: false, parts, ..
        } => {
            let f = format_ident!("gather{}", parts.len().clamp(1, 8), span = span);
            let parts = parts.iter().map(|part| whole_arg(part, tk));
            quote_spanned! {span=> #p::#f(#(#parts),*) }
        }
    }
}

/// An argument of a `.map(..)` call, checked against the element type `expected`.
fn mapped_arg(a: &Ident, arg: &Arg, expected: &TokenStream) -> TokenStream {
    let span = arg.span();
    let p = p_at(span);
    let elem_check = quote_spanned! {span=>
        <_ as #p::MapElement<#expected, __TideflowTask>>::check(#p::Arg::payload(&#a));
    };
    match arg {
        Arg::Unmapped(inner) => whole_checked(a, inner, expected),
        Arg::Name(ident, Kind::Single) => {
            let fan = quote_spanned! {span=> let #a = <_ as #p::MapOver<__TideflowTask>>::fan_out(&#ident); };
            quote! { #fan #elem_check }
        }
        Arg::Name(ident, Kind::Mapped) => {
            let zip = quote_spanned! {span=> let #a = #p::zip(&#ident); };
            quote! { #zip #elem_check }
        }
        Arg::Const(e) => {
            let text = expr_text(e);
            let fan = quote_spanned! {span=>
                let #a = <_ as #p::MapOver<__TideflowTask>>::fan_out_const(#e, #text);
            };
            quote! { #fan #elem_check }
        }
        // Reported by the analysis; emit the whole value so nothing cascades.
        Arg::Gather { .. } => whole_checked(a, arg, expected),
    }
}

/// The flow as a task of other flows (a subflow): its companion implements `Task`, with
/// the flow's parameters, in order, as the task's parameters and its output as the task's.
/// Calling it runs the flow as its own flow run, kept in the parent's run result.
fn subflow_task(flow: &FlowDecl) -> TokenStream {
    let p = private();
    let name = &flow.name;
    let name_text = name.to_string();
    let out = output_type(flow);
    let out_text = output_text(flow);
    let param_tys: Vec<&Type> = flow.params.iter().map(|p| &p.ty).collect();
    let param_names: Vec<String> = flow.params.iter().map(|p| p.name.to_string()).collect();
    let param_texts: Vec<String> = param_tys.iter().map(|t| type_text(t)).collect();
    quote! {
        const _: () = {
            #[diagnostic::do_not_recommend]
            impl #p::Task for #name {
                type Output = #out;
                type Sig = fn(#(#param_tys),*) -> #out;
                const DEF: &'static #p::TaskDef = &#p::TaskDef {
                    name: #name_text,
                    key: ::core::concat!(::core::module_path!(), "::", #name_text),
                    options: #p::TaskOptions {
                        local: true,
                        ..#p::TaskOptions::DEFAULT
                    },
                    params: &[#(#p::TaskParam { name: #param_names, ty: #param_texts }),*],
                    output: #out_text,
                    body: {
                        fn __tideflow_subflow(
                            __tideflow_values: #p::Vec<#p::Value>,
                            __tideflow_ctx: #p::TaskContext,
                        ) -> #p::SubflowFuture {
                            #p::Flow::run_as_subflow(#name::__tideflow_flow(), __tideflow_values, __tideflow_ctx)
                        }
                        #p::TaskBody::Subflow(__tideflow_subflow)
                    },
                    codec: ::core::option::Option::None,
                };
            }
        };
    }
}

/// The flow's output type as written (`()` for none).
fn output_text(flow: &FlowDecl) -> String {
    match &flow.output {
        Some(t) => type_text(t),
        None => "()".to_owned(),
    }
}

/// The flow's registration by name, with the way to show its output without its type
/// (`Display`, else `Debug`; `Serialize` for JSON), picked here for the concrete type.
fn registration(flow: &FlowDecl) -> TokenStream {
    let p = private();
    let name = &flow.name;
    let name_text = name.to_string();
    let out = output_type(flow);
    let out_text = output_text(flow);
    let view = match &flow.output {
        None => quote! { #p::OutputView::NONE },
        Some(_) => quote! {
            #p::OutputView {
                text: |__tideflow_v| {
                    #[allow(unused_imports)]
                    use #p::{ShowDebug as _, ShowDisplay as _, ShowNothing as _};
                    __tideflow_v.downcast_ref::<#out>().and_then(|__tideflow_o| (&&&#p::Show(__tideflow_o)).text())
                },
                json: |__tideflow_v| {
                    #[allow(unused_imports)]
                    use #p::{ShowJson as _, ShowNothing as _};
                    __tideflow_v.downcast_ref::<#out>().and_then(|__tideflow_o| (&&#p::Show(__tideflow_o)).json())
                },
            }
        },
    };
    quote! {
        #p::inventory::submit! {
            #p::FlowRegistration {
                name: #name_text,
                module: ::core::module_path!(),
                output: #out_text,
                build: {
                    fn __tideflow_build() -> #p::DynFlow {
                        #p::DynFlow::new(#name::__tideflow_flow(), #view)
                    }
                    __tideflow_build
                },
            }
        }
    }
}

/// The flow's companion: a braced struct with the flow's name, which lives in the type
/// namespace only, so the flow's function keeps its name.
fn companion(vis: &Visibility, name: &Ident) -> TokenStream {
    let doc = format!("Flow companion of [`{name}()`], used by compile-time checks.");
    quote! {
        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #vis struct #name {}
    }
}

/// Stands in for a flow with errors: its companion and its function, whose body is never
/// compiled into a graph, so that its callers still type-check and add no errors.
pub(super) fn fallback(flow: &FlowDecl) -> TokenStream {
    stand_in(
        &flow.attrs,
        &flow.vis,
        &flow.fn_token,
        &flow.name,
        &output_type(flow),
    )
}

/// Stands in for a flow that does not parse: its companion and its function, returning
/// the declared output when that could be read, and the companion's `Task` impl, so
/// that other flows can still call it as a subflow.
///
/// The syntax error is put inside the impl's signature type, as the length of an array:
/// `type Sig = [(); compile_error!(..)]`. rustc reports it once, at the user's token,
/// and the type then refers to an error, so calls of the flow in other flows report
/// nothing more, whatever their arguments. An unreadable output is that type too. (A
/// `compile_error!` in the place of a type makes it `()`, which would not stay quiet.)
pub(super) fn broken(sig: &BrokenSignature, error: &syn::Error) -> TokenStream {
    let p = private();
    let name = &sig.name;
    let error = error.to_compile_error();
    let out = match &sig.output {
        Some(ty) => ty.to_token_stream(),
        None => quote!(<#name as #p::Task>::Sig),
    };
    let stand_in = stand_in(&sig.attrs, &sig.vis, &sig.fn_token, name, &out);
    quote! {
        #stand_in
        const _: () = {
            #[diagnostic::do_not_recommend]
            impl #p::Task for #name {
                type Output = #out;
                type Sig = [(); #error];
                // Never evaluated: nothing is built while the crate has an error.
                const DEF: &'static #p::TaskDef = ::core::panic!("this flow did not compile");
            }
        };
    }
}

fn stand_in(
    attrs: &[Attribute],
    vis: &Visibility,
    fn_token: &Token![fn],
    name: &Ident,
    out: &TokenStream,
) -> TokenStream {
    let companion = companion(vis, name);
    quote! {
        #companion
        #(#attrs)*
        #vis #fn_token #name() -> ::tideflow::Flow<#out> {
            ::core::unreachable!("this flow did not compile")
        }
    }
}

fn output_type(flow: &FlowDecl) -> TokenStream {
    match &flow.output {
        Some(t) => t.to_token_stream(),
        None => quote!(()),
    }
}

/// The flow's description for runs and graphs: its doc comment, trimmed.
fn doc_text(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for a in attrs {
        if !a.path().is_ident("doc") {
            continue;
        }
        if let syn::Meta::NameValue(nv) = &a.meta {
            if let Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &nv.value
            {
                lines.push(s.value().trim().to_owned());
            }
        }
    }
    lines.join("\n").trim().to_owned()
}

/// The path of the generated code's support module.
fn private() -> TokenStream {
    quote!(::tideflow::__private)
}

/// The path of the generated code's support module, with every token at `span`, so a
/// check quoted at a user's token stays entirely at that token.
fn p_at(span: Span) -> TokenStream {
    crate::private_at(span)
}
