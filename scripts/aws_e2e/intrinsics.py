"""A small, generic resolver of CloudFormation intrinsic functions.

    r = Resolver(template, parameters, physical, region=..., account=...)
    r.resolve(node)          # Ref, Fn::GetAtt, Fn::Sub (both forms), Fn::If, Fn::Join,
                             # Fn::Select, Fn::Split, Fn::FindInMap, Fn::Base64, Fn::Equals,
                             # Fn::Not, Fn::And, Fn::Or, Condition, AWS::NoValue, pseudo params
    r.condition("IsProd")    # a template condition, evaluated

`physical` maps a logical id to what CloudFormation would give for it:
`{"ref": <value of Ref>, "attrs": {<attribute>: <value of GetAtt>}}`; a logical id missing from
it (or an attribute missing from "attrs") is an error, never a silent placeholder.

Also `substitute(node, standins)`: rewrites a template so that Ref / GetAtt / ${X} of the logical
ids in `standins` become literal values, leaving every other intrinsic in place (used to give
moto a template whose references to resources it cannot create are already resolved).
"""
import base64
import re

NO_VALUE = object()  # AWS::NoValue: the property (or list item) is removed

_SUB_VAR = re.compile(r"\$\{([^}]*)\}")


class IntrinsicError(Exception):
    pass


def pseudo_parameters(region, account, partition="aws", stack_name="", stack_id=""):
    suffix = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return {
        "AWS::Region": region,
        "AWS::AccountId": account,
        "AWS::Partition": partition,
        "AWS::URLSuffix": suffix,
        "AWS::StackName": stack_name,
        "AWS::StackId": stack_id,
        "AWS::NotificationARNs": [],
    }


def parameter_values(template, given):
    """The value of every template parameter: given, else its Default (lists split)."""
    out = {}
    for name, spec in (template.get("Parameters") or {}).items():
        if name in given:
            value = given[name]
        elif "Default" in spec:
            value = spec["Default"]
        else:
            raise IntrinsicError(f"parameter {name} has no value and no default")
        typ = spec.get("Type", "String")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if typ.startswith("List<") or typ == "CommaDelimitedList":
            value = value if isinstance(value, list) else [v.strip() for v in str(value).split(",")]
        out[name] = value
    return out


class Resolver:
    def __init__(self, template, parameters, physical, region="us-east-1",
                 account="123456789012", partition="aws", stack_name="", stack_id=""):
        self.template = template
        self.params = parameter_values(template, parameters)
        self.pseudo = pseudo_parameters(region, account, partition, stack_name, stack_id)
        self.physical = physical
        self._conditions = {}

    # -- conditions -------------------------------------------------------------------------
    def condition(self, name):
        if name not in self._conditions:
            conds = self.template.get("Conditions") or {}
            if name not in conds:
                raise IntrinsicError(f"unknown condition {name}")
            self._conditions[name] = None  # cycle guard
            value = self.resolve(conds[name])
            if not isinstance(value, bool):
                raise IntrinsicError(f"condition {name} is not a boolean: {value!r}")
            self._conditions[name] = value
        if self._conditions[name] is None:
            raise IntrinsicError(f"condition {name} refers to itself")
        return self._conditions[name]

    def resource_exists(self, logical_id):
        res = (self.template.get("Resources") or {})[logical_id]
        return "Condition" not in res or self.condition(res["Condition"])

    # -- references -------------------------------------------------------------------------
    def ref(self, name):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        if name in self.physical:
            if "ref" not in self.physical[name]:
                raise IntrinsicError(f"no Ref value known for {name}")
            return self.physical[name]["ref"]
        raise IntrinsicError(f"Ref to unknown or uncreated {name}")

    def getatt(self, name, attr):
        phys = self.physical.get(name)
        if phys is None:
            raise IntrinsicError(f"Fn::GetAtt of unknown or uncreated {name}")
        attrs = phys.get("attrs") or {}
        if attr not in attrs:
            raise IntrinsicError(f"Fn::GetAtt {name}.{attr}: attribute not known")
        return attrs[attr]

    def sub(self, text, variables):
        def one(m):
            inner = m.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            inner = inner.strip()
            if inner in variables:
                value = variables[inner]
            elif "." in inner and not inner.startswith("AWS::"):
                res, attr = inner.split(".", 1)
                value = self.getatt(res, attr)
            else:
                value = self.ref(inner)
            if value is NO_VALUE or isinstance(value, (dict, list)):
                raise IntrinsicError(f"Fn::Sub variable {inner} is not a string: {value!r}")
            return str(value)

        return _SUB_VAR.sub(one, text)

    # -- the walk ---------------------------------------------------------------------------
    def resolve(self, node):
        if isinstance(node, list):
            out = [self.resolve(v) for v in node]
            return [v for v in out if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            fn = _FUNCTIONS.get(key)
            if fn is not None:
                return fn(self, arg)
        out = {}
        for k, v in node.items():
            r = self.resolve(v)
            if r is not NO_VALUE:
                out[k] = r
        return out


def _getatt(r, arg):
    if isinstance(arg, str):
        name, attr = arg.split(".", 1)
    else:
        name, attr = arg[0], r.resolve(arg[1])
    return r.getatt(name, attr)


def _sub(r, arg):
    if isinstance(arg, str):
        return r.sub(arg, {})
    text, variables = arg
    return r.sub(text, {k: r.resolve(v) for k, v in variables.items()})


def _if(r, arg):
    name, yes, no = arg
    return r.resolve(yes if r.condition(name) else no)


def _join(r, arg):
    sep, items = arg
    items = r.resolve(items)
    return r.resolve(sep).join(str(i) for i in items)


def _select(r, arg):
    index, items = arg
    return r.resolve(items)[int(r.resolve(index))]


def _split(r, arg):
    sep, text = arg
    return r.resolve(text).split(r.resolve(sep))


def _find_in_map(r, arg):
    name, top, second = (r.resolve(a) for a in arg[:3])
    return r.template["Mappings"][name][top][second]


def _equals(r, arg):
    a, b = (r.resolve(x) for x in arg)
    return str(a) == str(b) if not isinstance(a, (list, dict)) else a == b


_FUNCTIONS = {
    "Ref": lambda r, arg: r.ref(arg),
    "Fn::GetAtt": _getatt,
    "Fn::Sub": _sub,
    "Fn::If": _if,
    "Fn::Join": _join,
    "Fn::Select": _select,
    "Fn::Split": _split,
    "Fn::FindInMap": _find_in_map,
    "Fn::Base64": lambda r, arg: base64.b64encode(str(r.resolve(arg)).encode()).decode(),
    "Fn::Equals": _equals,
    "Fn::Not": lambda r, arg: not r.resolve(arg[0]),
    "Fn::And": lambda r, arg: all(r.resolve(a) for a in arg),
    "Fn::Or": lambda r, arg: any(r.resolve(a) for a in arg),
    "Condition": lambda r, arg: r.condition(arg),
}


def substitute(node, standins):
    """Replaces Ref X, GetAtt X.a and ${X} / ${X.a} inside Fn::Sub for X in `standins`
    ({logical_id: {"ref": v, "attrs": {...}}}) with literals; everything else is kept."""
    if isinstance(node, list):
        return [substitute(v, standins) for v in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (key, arg), = node.items()
        if key == "Ref" and isinstance(arg, str) and arg in standins:
            return standins[arg]["ref"]
        if key == "Fn::GetAtt":
            name, attr = arg.split(".", 1) if isinstance(arg, str) else arg
            if name in standins:
                attrs = standins[name].get("attrs") or {}
                if attr not in attrs:
                    raise IntrinsicError(f"Fn::GetAtt {name}.{attr} of a stand-in: not known")
                return attrs[attr]
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else arg

            def one(m):
                inner = m.group(1)
                if inner.startswith("!") or inner in variables:
                    return m.group(0)
                name, _, attr = inner.partition(".")
                if name not in standins:
                    return m.group(0)
                if attr:
                    attrs = standins[name].get("attrs") or {}
                    if attr not in attrs:
                        raise IntrinsicError(f"${{{inner}}} of a stand-in: not known")
                    return str(attrs[attr])
                return str(standins[name]["ref"])

            text = _SUB_VAR.sub(one, text)
            variables = {k: substitute(v, standins) for k, v in variables.items()}
            return {"Fn::Sub": [text, variables] if variables else text}
    return {k: substitute(v, standins) for k, v in node.items()}
