use tideflow::prelude::*;

#[task]
fn greet(name: String) -> String {
    format!("hello {name}")
}

flow! {
    pub fn f(name: String = "ada".into()) {
        if name.is_empty() {
            greet("stranger".to_owned());
        }
    }
}

fn main() {}
