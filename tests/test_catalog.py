import pytest

from meshrecon.data import DatasetCatalog, Metadata, MetadataCatalog


@pytest.fixture
def registered():
    names = ["catalog_test_a", "catalog_test_b"]
    DatasetCatalog.register(names[0], lambda: [{"id": 0}, {"id": 1}])
    DatasetCatalog.register(names[1], lambda: [{"id": 2}])
    yield names
    for n in names:
        DatasetCatalog.remove(n)
        if n in MetadataCatalog:
            MetadataCatalog.remove(n)


def test_register_and_get_calls_the_loader_each_time(registered):
    first = DatasetCatalog.get(registered[0])
    assert first == [{"id": 0}, {"id": 1}]
    first.append({"id": 99})  # the caller owns the list
    assert DatasetCatalog.get(registered[0]) == [{"id": 0}, {"id": 1}]
    assert set(registered) <= set(DatasetCatalog.list())


def test_unknown_name_error_lists_registered_names(registered):
    with pytest.raises(KeyError) as err:
        DatasetCatalog.get("catalog_test_missing")
    message = str(err.value)
    assert "catalog_test_missing" in message
    assert registered[0] in message and registered[1] in message


def test_duplicate_and_non_callable_registrations_are_rejected(registered):
    with pytest.raises(KeyError, match="already registered"):
        DatasetCatalog.register(registered[0], lambda: [])
    with pytest.raises(TypeError):
        DatasetCatalog.register("catalog_test_c", [{"id": 0}])


def test_loader_must_return_a_list():
    DatasetCatalog.register("catalog_test_tuple", lambda: ({"id": 0},))
    try:
        with pytest.raises(TypeError, match="list of dicts"):
            DatasetCatalog.get("catalog_test_tuple")
    finally:
        DatasetCatalog.remove("catalog_test_tuple")


def test_metadata_attribute_access_and_conflicts(registered):
    meta = MetadataCatalog.get(registered[0])
    assert MetadataCatalog.get(registered[0]) is meta
    meta.thing_classes = ["chair", "table"]
    meta.set(evaluator_type="toy")
    assert meta.thing_classes == ["chair", "table"]
    assert meta.get("evaluator_type") == "toy"
    assert meta.get("missing", 3) == 3
    meta.thing_classes = ["chair", "table"]  # same value again is fine
    with pytest.raises(AttributeError, match="already"):
        meta.thing_classes = ["sofa"]
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        meta.missing
    assert meta.as_dict()["name"] == registered[0]


def test_metadata_needs_a_name():
    with pytest.raises(ValueError):
        MetadataCatalog.get("")
    assert Metadata(name="x", a=1).a == 1
