use tideflow::prelude::*;

#[task]
fn numbers(n: u64) -> Vec<u64> {
    (1..=n).collect()
}

#[task]
async fn total(xs: Vec<u64>) -> u64 {
    xs.iter().sum()
}

#[task]
async fn describe(total: u64) -> Result<String, TaskError> {
    Ok(format!("total {total}"))
}

#[task]
fn shout(text: String) -> String {
    text.to_uppercase()
}

flow! {
    pub fn sum_numbers(n: u64 = 3) -> String {
        let xs = numbers(n);
        let t = total(xs);
        let text = describe(t);
        shout(text)
    }
}

fn main() {
    let _: Flow<String> = sum_numbers();
}
