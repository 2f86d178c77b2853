import { useState } from "react";
import { useCart } from "@cartsync/react";

const PRODUCTS = [
  { sku: "TEE-RED-M", name: "Red tee (M)", price: { amount: 1999, currency: "USD" } },
  { sku: "CAP-BLK", name: "Black cap", price: { amount: 1499, currency: "USD" } },
];

const money = (m) => new Intl.NumberFormat("en-US", { style: "currency", currency: m.currency }).format(m.amount / 100);

export default function App() {
  const { lines, itemCount, total, lastError, cart } = useCart();
  const [error, setError] = useState(null);
  // Every CartClient call may throw a CartError for bad input: show it, change nothing.
  const attempt = (f) => {
    try {
      f();
      setError(null);
    } catch (e) {
      setError(`${e.message} (${e.code})`);
    }
  };
  return (
    <main>
      <h1>
        Shop <small data-testid="count">{itemCount}</small>
      </h1>
      {PRODUCTS.map((p) => (
        <button key={p.sku} data-testid={`add-${p.sku}`} onClick={() => attempt(() => cart.add(p.sku, 1, p.price))}>
          Add {p.name} ({money(p.price)})
        </button>
      ))}
      <ul data-testid="lines">
        {lines.map((l) => (
          <li key={l.sku} data-sku={l.sku}>
            {l.sku} × <span data-testid="qty">{l.quantity}</span>{" "}
            <button onClick={() => attempt(() => cart.remove(l.sku))}>Remove</button>
          </li>
        ))}
      </ul>
      <p>
        Total <strong data-testid="total">{money(total)}</strong>
      </p>
      {(error || lastError) && <p role="alert">{error ?? lastError.message}</p>}
    </main>
  );
}
