"""The public API: every public name of lyaplib has a docstring (the API reference page
is generated from them), and the architecture registry is the one source of names."""

import importlib
import inspect

import pytest

import lyaplib
from lyaplib import models
from lyaplib.testing import CELLS

MODULES = ["lyaplib", "lyaplib.spectrum", "lyaplib.orthonormalize", "lyaplib.cells.base",
           "lyaplib.cells.maps", "lyaplib.cells.rnn", "lyaplib.cells.gated",
           "lyaplib.cells.zoo", "lyaplib.cells.adaptive", "lyaplib.cells.activations",
           "lyaplib.models", "lyaplib.tasks", "lyaplib.training", "lyaplib.sweeps",
           "lyaplib.population", "lyaplib.force", "lyaplib.testing", "lyaplib.aelle",
           "lyaplib.stats", "lyaplib.fractional", "lyaplib.perturbations", "lyaplib.scale",
           "lyaplib.plotting", "lyaplib.widgets", "lyaplib.benchmark", "lyaplib.claims",
           "lyaplib.data.text", "lyaplib.data.mocap", "lyaplib.data.mnist"]


def public_objects(module):
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            yield name, obj
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or attr in getattr(obj, "__dataclass_fields__", {}):
                        continue
                    if inspect.isfunction(member) or isinstance(member, property):
                        yield f"{name}.{attr}", _inherited_doc(obj, attr)


def _inherited_doc(cls, attr):
    """The member's docstring, or that of the first base class that documents it (a Cell's
    ``step`` is documented once, on the protocol's base class)."""
    for base in cls.__mro__:
        member = vars(base).get(attr)
        if member is not None and (member.__doc__ or "").strip():
            return member
    return vars(cls)[attr]


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_name_has_a_docstring(module_name):
    module = importlib.import_module(module_name)
    assert inspect.getdoc(module), f"{module_name} has no module docstring"
    missing = [name for name, obj in public_objects(module) if not (obj.__doc__ or "").strip()]
    assert missing == [], f"{module_name}: no docstring for {missing}"


def test_submodules_load_on_first_use():
    assert lyaplib.models is models
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        lyaplib.nonsense  # noqa: B018


def test_registry_names_and_errors():
    assert models.AELLE_ARCHITECTURES == ("lstm", "gru", "rnn", "antisymmetric", "cornn",
                                          "lipschitz", "noisy", "lem")
    assert set(models.display_names()) == set(models.ARCHITECTURES)
    with pytest.raises(ValueError, match="architecture must be one of .*'lstm'"):
        models.get_architecture("transformer")


@pytest.mark.parametrize("name", list(models.ARCHITECTURES))
def test_every_registered_architecture_builds_trains_and_is_a_cell(name):
    model = models.RecurrentClassifier(name, 3, 4, 2)
    cell = model.cell("full")
    assert isinstance(cell, lyaplib.Cell) and cell.input_size == 3
    assert any(type(cell) is type(make()) for make in CELLS.values()), \
        f"{name}: its cell class has no entry in lyaplib.testing.CELLS"
