"""Image.walk behaves like os.walk, without recursion limits."""

import cimfs


def test_walk_deep_tree_both_orders(tmp_path):
    depth = 1500  # deeper than Python's default recursion limit
    with cimfs.create(tmp_path, "deep.cim") as w:
        path = ""
        for i in range(depth):
            path = f"{path}\\d" if path else "d"
            w.add_directory(path)
        w.add_file(path + "\\leaf", data=b"x")
    with cimfs.open(tmp_path / "deep.cim") as img:
        down = list(img.walk())
        up = list(img.walk(topdown=False))
    assert len(down) == depth + 1 and len(up) == depth + 1
    assert down[0] == ("", ["d"], [])
    assert down[-1][2] == ["leaf"]
    assert up == list(reversed(down))


def test_walk_order_and_pruning(tmp_path):
    with cimfs.create(tmp_path, "t.cim") as w:
        for d in ("a", "a\\x", "b", "b\\y", "c"):
            w.add_directory(d)
        w.add_file("a\\x\\f", data=b"1")
        w.add_file("b\\g", data=b"2")
    with cimfs.open(tmp_path / "t.cim") as img:
        assert list(img.walk()) == [
            ("", ["a", "b", "c"], []), ("a", ["x"], []), ("a\\x", [], ["f"]),
            ("b", ["y"], ["g"]), ("b\\y", [], []), ("c", [], []),
        ]
        seen = []
        for dirpath, dirs, files in img.walk():
            seen.append(dirpath)
            if dirpath == "":
                dirs.remove("b")
        assert seen == ["", "a", "a\\x", "c"]
        assert [p for p, _, _ in img.walk(topdown=False)] == ["a\\x", "a", "b\\y", "b", "c", ""]
        assert [p for p, _, _ in img.walk("B")] == ["B", "B\\y"]
