"""Unit tests of the SDK's lookups, natively (the contract's Python bindings on the
path): a stubbed table, a missing one, a failing one."""

import unittest

import pipeline_plugin as pp


class LookupTest(unittest.TestCase):
    def test_a_stubbed_table_answers_each_distinct_key_once(self):
        pp.stub_table("users", {"u1": {"name": "Ann"}})
        found = pp.lookup("users", ["u1", "u2", "u1"])
        self.assertEqual(len(found), 2)
        self.assertEqual(found.json("u1"), {"name": "Ann"})
        self.assertIsNone(found.get("u2"))
        self.assertNotIn("u2", found)

    def test_a_table_not_stubbed_is_not_granted_and_a_failing_one_unavailable(self):
        with self.assertRaises(pp.LookupNotGranted):
            pp.lookup("nope", ["k"])
        pp.stub_unavailable("prices", "throttled")
        with self.assertRaises(pp.LookupUnavailable) as caught:
            pp.lookup("prices", ["p"])
        self.assertIsInstance(caught.exception, pp.InfrastructureError)
        self.assertEqual(len(pp.lookup("prices", [])), 0, "no keys: nothing asked")


if __name__ == "__main__":
    unittest.main()
