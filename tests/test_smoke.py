import cimfs


def test_fixture_hello(fixture_image):
    with cimfs.open(fixture_image) as img:
        assert img.listdir() == ["hello.txt"]
        assert img.read_bytes("HELLO.TXT") == b"Hello world!"
        assert img.verify() == []
