"""Each function against the examples of "Azure AD Connect sync: Functions Reference" (quoted in comments) and
the behaviour its remarks describe."""

from __future__ import annotations

import base64
import datetime as dt
import uuid

import pytest

from airflow_provider_aadsync.engine.expressions import ExpressionEvaluationError, FlowError, compile_expression
from airflow_provider_aadsync.engine.expressions.functions import FUNCTIONS

UTC = dt.UTC
PROXIES = ["smtp:jd@contoso.com", "SMTP:john.doe@contoso.com", "SIP:john.doe@contoso.com"]

DOC_EXAMPLES = [
    # BitAnd: `BitAnd(&HF, &HF7)` Returns 7
    ("BitAnd(&HF, &HF7)", {}, 7),
    ("BitOr(&H1, &H6)", {}, 7),
    # CBool: `CBool([attrib1] = [attrib2])` Returns True if both attributes have the same value
    ("CBool([attrib1] = [attrib2])", {"attrib1": "a", "attrib2": "a"}, True),
    ("CBool([attrib1] = [attrib2])", {"attrib1": "a", "attrib2": "b"}, False),
    # CDate: `CDate("2013-01-10 4:00 PM -8")` Returns a DateTime representing "2013-01-11 12:00 AM"
    ('CDate("2013-01-10 4:00 PM -8")', {}, dt.datetime(2013, 1, 11, 0, 0, tzinfo=UTC)),
    # Contains: `IIF(Contains([proxyAddresses],"SMTP:")>0,[proxyAddresses],Error("No primary SMTP address found."))`
    (
        'IIF(Contains([proxyAddresses],"SMTP:")>0,[proxyAddresses],Error("No primary SMTP address found."))',
        {"proxyAddresses": PROXIES},
        PROXIES,
    ),
    # ConvertFromBase64: both examples return "Hello world!"
    ('ConvertFromBase64("SABlAGwAbABvACAAdwBvAHIAbABkACEA")', {}, "Hello world!"),
    ('ConvertFromBase64("SGVsbG8gd29ybGQh", UTF8)', {}, "Hello world!"),
    # ConvertFromUTF8Hex: `ConvertFromUTF8Hex("48656C6C6F20776F726C6421")` Returns "Hello world!"
    ('ConvertFromUTF8Hex("48656C6C6F20776F726C6421")', {}, "Hello world!"),
    # ConvertToBase64: `ConvertToBase64("Hello world!")` Returns "SABlAGwAbABvACAAdwBvAHIAbABkACEA"
    ('ConvertToBase64("Hello world!")', {}, "SABlAGwAbABvACAAdwBvAHIAbABkACEA"),
    # ConvertToUTF8Hex: `ConvertToUTF8Hex("Hello world!")` Returns 48656C6C6F20776F726C6421
    ('ConvertToUTF8Hex("Hello world!")', {}, "48656C6C6F20776F726C6421"),
    # CStr: `CStr([dn])` Could return "cn=Joe,dc=contoso,dc=com"
    ("CStr([dn])", {"dn": "cn=Joe,dc=contoso,dc=com"}, "cn=Joe,dc=contoso,dc=com"),
    ("CStr(42) & CStr(True)", {}, "42True"),
    # CRef: `CRef("CN=LC Services,CN=Microsoft,...," & %Forest.LDAP%)` (parameter given below)
    # DateAdd: `DateAdd("m", 3, CDate("2001-01-01"))` returns a DateTime representing "2001-04-01"
    ('DateAdd("m", 3, CDate("2001-01-01"))', {}, dt.datetime(2001, 4, 1, tzinfo=UTC)),
    # DateFromNum: `DateFromNum(129699324000000000)` Returns a DateTime representing 2012-01-01 23:00:00
    ("DateFromNum(129699324000000000)", {}, dt.datetime(2012, 1, 1, 23, 0, tzinfo=UTC)),
    (
        "DateFromNum([lastLogonTimestamp])",
        {"lastLogonTimestamp": 129699324000000000},
        dt.datetime(2012, 1, 1, 23, 0, tzinfo=UTC),
    ),
    # DNComponent: `DNComponent(CRef([dn]),1)` If dn is "cn=Joe,ou=…," it returns Joe
    ("DNComponent(CRef([dn]),1)", {"dn": "cn=Joe,ou=Atlanta,dc=contoso,dc=com"}, "Joe"),
    # DNComponentRev: both `DNComponentRev(CRef([dn]),3)` and `DNComponentRev(CRef([dn]),1,"DC")` return US
    ("DNComponentRev(CRef([dn]),3)", {"dn": "cn=Joe,ou=Atlanta,ou=GA,ou=US, dc=contoso,dc=com"}, "US"),
    ('DNComponentRev(CRef([dn]),1,"DC")', {"dn": "cn=Joe,ou=Atlanta,ou=GA,ou=US, dc=contoso,dc=com"}, "US"),
    # FormatDateTime: `FormatDateTime(CDate("12/25/2007"),"yyyy-MM-dd")` Results in "2007-12-25"
    ('FormatDateTime(CDate("12/25/2007"),"yyyy-MM-dd")', {}, "2007-12-25"),
    # `FormatDateTime(DateFromNum([pwdLastSet]),"yyyyMMddHHmmss.0Z")` Can result in "20140905081453.0Z"
    (
        'FormatDateTime(DateFromNum([pwdLastSet]),"yyyyMMddHHmmss.0Z")',
        {"pwdLastSet": 130543784930000000},
        "20140905081453.0Z",
    ),
    # IIF: `IIF([employeeType]="Intern","t-" & [alias],[alias])`
    ('IIF([employeeType]="Intern","t-" & [alias],[alias])', {"employeeType": "Intern", "alias": "jdoe"}, "t-jdoe"),
    ('IIF([employeeType]="Intern","t-" & [alias],[alias])', {"employeeType": "FTE", "alias": "jdoe"}, "jdoe"),
    # InStr: `InStr("The quick brown fox","quick")` Evaluates to 5; `InStr("repEated","e",3,vbBinaryCompare)` 7
    ('InStr("The quick brown fox","quick")', {}, 5),
    ('InStr("repEated","e",3,vbBinaryCompare)', {}, 7),
    ('InStr("repEated","e",3,vbTextCompare)', {}, 4),
    ('InStr("abc","z")', {}, 0),
    # InStrRev: `InStrRev("abbcdbbbef","bb")` Returns 7
    ('InStrRev("abbcdbbbef","bb")', {}, 7),
    ('InStrRev("abbcdbbbef","bb",5)', {}, 2),
    # IsBitSet: `IsBitSet(&HF,4)` Returns True because bit "4" is set in the hexadecimal value "F"
    ("IsBitSet(&HF,4)", {}, True),
    ("IsBitSet([userAccountControl],2)", {"userAccountControl": 514}, True),
    ("IsBitSet([userAccountControl],2)", {"userAccountControl": 512}, False),
    # IsGuid: `IIF(IsGuid([strAttribute]),CGuid([strAttribute]),NULL)`
    ("IIF(IsGuid([strAttribute]),CGuid([strAttribute]),NULL)", {"strAttribute": "not a guid"}, None),
    # IsNull: `IsNull([displayName])` Returns True if the attribute is not present in the CS or MV
    ("IsNull([displayName])", {}, True),
    ("IsNull([displayName])", {"displayName": ""}, False),
    # IsNullOrEmpty: `IsNullOrEmpty([displayName])` True if not present or an empty string
    ("IsNullOrEmpty([displayName])", {"displayName": ""}, True),
    ("IsNullOrEmpty([displayName])", {}, True),
    ("IsNullOrEmpty([displayName])", {"displayName": "x"}, False),
    # IsPresent: `Switch(IsPresent([directManager]),[directManager], IsPresent([skiplevelManager]),...)`
    (
        "Switch(IsPresent([directManager]),[directManager], IsPresent([skiplevelManager]),[skiplevelManager],"
        " IsPresent([director]),[director])",
        {"skiplevelManager": "CN=Skip", "director": "CN=Dir"},
        "CN=Skip",
    ),
    (
        "Switch(IsPresent([directManager]),[directManager], IsPresent([skiplevelManager]),[skiplevelManager],"
        " IsPresent([director]),[director])",
        {},
        None,
    ),
    # Item: `Mid(Item([proxyAddresses],Contains([proxyAddresses], "SMTP:")),6)` Returns the primary email address
    # (erratum: Mid with two arguments, accepted as VBA does)
    (
        'Mid(Item([proxyAddresses],Contains([proxyAddresses], "SMTP:")),6)',
        {"proxyAddresses": PROXIES},
        "john.doe@contoso.com",
    ),
    # Join: `Join([proxyAddresses],",")` Could return: "SMTP:john.doe@contoso.com,smtp:jd@contoso.com"
    (
        'Join([proxyAddresses],",")',
        {"proxyAddresses": ["SMTP:john.doe@contoso.com", "smtp:jd@contoso.com"]},
        "SMTP:john.doe@contoso.com,smtp:jd@contoso.com",
    ),
    ("Join([proxyAddresses])", {"proxyAddresses": ["a", "b"]}, "a b"),
    ('Join([proxyAddresses], "")', {"proxyAddresses": ["a", "b"]}, "ab"),
    # LCase: `LCase("TeSt")` Returns "test"
    ('LCase("TeSt")', {}, "test"),
    # Left: `Left("John Doe", 3)` Returns "Joh"
    ('Left("John Doe", 3)', {}, "Joh"),
    ('Left("John Doe", 0)', {}, ""),
    ('Left("John Doe", -1)', {}, "John Doe"),
    ("Left([missing], 3)", {}, ""),
    ('Left("Jo", 3)', {}, "Jo"),
    # Len: `Len("John Doe")` Returns 8
    ('Len("John Doe")', {}, 8),
    # LTrim: `LTrim(" Test ")` Returns "Test "
    ('LTrim(" Test ")', {}, "Test "),
    # Mid: `Mid("John Doe", 3, 5)` Returns "hn Do"; `Mid("John Doe", 6, 999)` Returns "Doe"
    ('Mid("John Doe", 3, 5)', {}, "hn Do"),
    ('Mid("John Doe", 6, 999)', {}, "Doe"),
    ('Mid("John Doe", 3, 0)', {}, ""),
    ('Mid("John Doe", 3, -1)', {}, "John Doe"),
    ('Mid("John Doe", 0, 2)', {}, "John Doe"),
    ('Mid("John Doe", 20, 2)', {}, "John Doe"),
    ("Mid([missing], 1, 2)", {}, ""),
    # NumFromDate: `NumFromDate(CDate("2012-01-01 23:00:00"))` Returns 129699324000000000
    ('NumFromDate(CDate("2012-01-01 23:00:00"))', {}, 129699324000000000),
    # PadLeft: `PadLeft("User", 10, "0")` Returns "000000User"; PadRight → "User000000"
    ('PadLeft("User", 10, "0")', {}, "000000User"),
    ('PadRight("User", 10, "0")', {}, "User000000"),
    ('PadLeft("LongerUser", 4, " ")', {}, "LongerUser"),
    ('PadRight([missing], 4, "x")', {}, ""),
    # PCase: `PCase("TEsT")` Returns "Test"; `PCase(LCase("TEST"))` Returns "Test"
    ('PCase("TEsT")', {}, "Test"),
    ('PCase(LCase("TEST"))', {}, "Test"),
    ('PCase("TEST")', {}, "TEST"),  # remarks: an all-uppercase word (an acronym) is left as it is
    ('PCase("john SMITH of IBM")', {}, "John SMITH Of IBM"),
    ('PCase("mcdonald  o\'neil")', {}, "Mcdonald  O'neil"),
    # RemoveDuplicates: `RemoveDuplicates([proxyAddresses])`
    ("RemoveDuplicates([proxyAddresses])", {"proxyAddresses": ["a", "b", "a", "A"]}, ["a", "b", "A"]),
    ("RemoveDuplicates([proxyAddresses])", {"proxyAddresses": ["a", "a"]}, "a"),
    # Replace: `Replace([address],"\r\n",", ")` "One Microsoft Way, Redmond, WA, USA"
    (
        r'Replace([address],"\r\n",", ")',
        {"address": "One Microsoft Way\r\nRedmond, WA\r\nUSA"},
        "One Microsoft Way, Redmond, WA, USA",
    ),
    ('Replace("a-b-c","-","")', {}, "abc"),
    # ReplaceChars: `ReplaceChars("Räksmörgås",%ReplaceString%)` Returns Raksmorgas (pattern: see PATTERN below)
    # Right: `Right("John Doe", 3)` Returns "Doe"
    ('Right("John Doe", 3)', {}, "Doe"),
    ('Right("John Doe", 0)', {}, ""),
    ('Right("John Doe", -2)', {}, "John Doe"),
    ('Right("Do", 3)', {}, "Do"),
    # RTrim: `RTrim(" Test ")` Returns " Test"
    ('RTrim(" Test ")', {}, " Test"),
    # Select: `Select($item,[otherPhone],Replace($item,"-",""))`
    (
        'Select($item,[otherPhone],Replace($item,"-",""))',
        {"otherPhone": ["555-1234", "555-9876"]},
        ["5551234", "5559876"],
    ),
    # Split: `Split("SMTP:john.doe@contoso.com,smtp:jd@contoso.com",",")` a multi-valued string with 2 elements
    (
        'Split("SMTP:john.doe@contoso.com,smtp:jd@contoso.com",",")',
        {},
        ["SMTP:john.doe@contoso.com", "smtp:jd@contoso.com"],
    ),
    ('Split("a,b,c,d",",",2)', {}, ["a", "b,c,d"]),
    ('Split("a",",")', {}, "a"),
    # Switch: `Switch([city] = "London", "English", [city] = "Rome", "Italian", ..., True, Error("Unknown city"))`
    (
        'Switch([city] = "London", "English", [city] = "Rome", "Italian", [city] = "Paris", "French", True,'
        ' Error("Unknown city"))',
        {"city": "Rome"},
        "Italian",
    ),
    # Trim: `Trim(" Test ")` Returns "Test"; `Trim([proxyAddresses])` trims each value
    ('Trim(" Test ")', {}, "Test"),
    ("Trim([proxyAddresses])", {"proxyAddresses": [" a ", "b  "]}, ["a", "b"]),
    # UCase: `UCase("TeSt")` Returns "TEST"
    ('UCase("TeSt")', {}, "TEST"),
    # Where (docs' example uses certificates; this one filters proxy addresses)
    ('Where($item,[proxyAddresses],Left($item,5) = "SMTP:")', {"proxyAddresses": PROXIES}, "SMTP:john.doe@contoso.com"),
    (
        'Where($item,[proxyAddresses],InStr($item,"smtp:",1,vbTextCompare) = 1)',
        {"proxyAddresses": PROXIES},
        PROXIES[:2],
    ),
    # With: `With($unExpiredCerts,Where(...),IIF(Count($unExpiredCerts)>0,$unExpiredCerts,NULL))` (shape)
    (
        'With($smtp,Where($item,[proxyAddresses],Left($item,5)="smtp:"),IIF(Count($smtp)>0,$smtp,NULL))',
        {"proxyAddresses": PROXIES},
        "smtp:jd@contoso.com",
    ),
    # Word: `Word("The quick brown fox",3," ")` Returns "brown"; `Word("This,string!has&many separators",3,",!&#")`
    ('Word("The quick brown fox",3," ")', {}, "brown"),
    ('Word("This,string!has&many separators",3,",!&#")', {}, "has"),
    ('Word("a b",0," ")', {}, ""),
    ('Word("a b",5," ")', {}, ""),
    ('Word([missing],1," ")', {}, ""),
    # Multi-valued section of "Understanding Declarative Provisioning Expressions"
    (
        'Word([proxyAddresses],1,"@") & "@contoso.com"',
        {"proxyAddresses": ["smtp:a@x.com", "SMTP:b@y.com"]},
        ["smtp:a@contoso.com", "SMTP:b@contoso.com"],
    ),
    ('IIF(InStr([proxyAddresses],"SIP:")=1,NULL,[proxyAddresses])', {"proxyAddresses": PROXIES}, PROXIES[:2]),
    # Count / ItemOrNull / Contains
    ("Count([proxyAddresses])", {"proxyAddresses": PROXIES}, 3),
    ("Count([proxyAddresses])", {}, 0),
    ("Count([mail])", {"mail": "a@b"}, 1),
    ("ItemOrNull([proxyAddresses],9)", {"proxyAddresses": PROXIES}, None),
    ("Item([proxyAddresses],1)", {"proxyAddresses": PROXIES}, PROXIES[0]),
    ('Contains([proxyAddresses],"sip:")', {"proxyAddresses": PROXIES}, 0),
    ('Contains([proxyAddresses],"sip:",CaseInsensitive)', {"proxyAddresses": PROXIES}, 3),
    # Evaluation functions
    ('IsEmpty("")', {}, True),
    ("IsEmpty([missing])", {}, False),
    ('IsNumeric("42")', {}, True),
    ('IsNumeric("4x")', {}, False),
    ('IsString("x")', {}, True),
    ("IsString([objectGUID])", {"objectGUID": b"\x00" * 16}, False),
    ('IsDate("2012-01-01")', {}, True),
    ('IsDate("yesterday")', {}, False),
    ('IsGuid("{00001111-aaaa-2222-bbbb-3333cccc4444}")', {}, True),
    ('IsGuid("00001111-aaaa-2222-bbbb-3333cccc4444")', {}, True),
    ('IsGuid("00001111-aaaa-2222-bbbb")', {}, False),
    ('CNum("42") + 1', {}, 43),
    ('CNum("1.5")', {}, 1.5),
    ('EscapeDNComponent("cn=" & [displayName])', {"displayName": "Doe, John <Sales>"}, r"cn=Doe\, John \<Sales\>"),
    ('EscapeDNComponent("cn=#1 ")', {}, r"cn=\#1\ "),
]


@pytest.mark.parametrize(("text", "context", "expected"), DOC_EXAMPLES, ids=[e[0][:60] for e in DOC_EXAMPLES])
def test_documented_example(ev, text, context, expected):
    assert ev(text, context) == expected


def test_every_documented_function_is_registered():
    documented = (
        "CertExtensionOids CertFormat CertFriendlyName CertHashString CertIssuer CertIssuerDN CertIssuerOid "
        "CertKeyAlgorithm CertKeyAlgorithmParams CertNameInfo CertNotAfter CertNotBefore CertPublicKeyOid "
        "CertPublicKeyParametersOid CertSerialNumber CertSignatureAlgorithmOid CertSubject CertSubjectNameDN "
        "CertSubjectNameOid CertThumbprint CertVersion IsCert "
        "CBool CDate CGuid ConvertFromBase64 ConvertToBase64 ConvertFromUTF8Hex ConvertToUTF8Hex CNum CRef CStr "
        "StringFromGuid StringFromSid DateAdd DateFromNum FormatDateTime Now NumFromDate DNComponent DNComponentRev "
        "EscapeDNComponent IsBitSet IsDate IsEmpty IsGuid IsNull IsNullOrEmpty IsNumeric IsPresent IsString BitAnd "
        "BitOr RandomNum Contains Count Item ItemOrNull Join RemoveDuplicates Split Error IIF Select Switch Where "
        "With GUID InStr InStrRev LCase Left Len LTrim Mid PadLeft PadRight PCase Replace ReplaceChars Right RTrim "
        "Trim UCase Word ValueCount ImportedValue"
    ).split()
    assert len(documented) == 87
    missing = [name for name in documented if name.casefold() not in FUNCTIONS]
    assert not missing
    assert {FUNCTIONS[name.casefold()].name for name in documented} == set(documented)
    assert len(FUNCTIONS) == len(documented)


class TestImmutableId:
    GUID = uuid.UUID("7d3f8a4c-2b1e-4f5a-9c8d-0e1f2a3b4c5d")

    def test_convert_to_base64_of_object_guid_is_the_immutable_id(self, ev):
        immutable_id = base64.b64encode(self.GUID.bytes_le).decode()
        assert ev("ConvertToBase64([objectGUID])", {"objectGUID": self.GUID.bytes_le}) == immutable_id

    def test_round_trip_through_convert_from_base64(self, ev):
        immutable_id = base64.b64encode(self.GUID.bytes_le).decode()
        context = {"sourceAnchor": immutable_id}
        # the documented str result (UTF-16LE) survives the way back unchanged
        assert ev("ConvertToBase64(ConvertFromBase64([sourceAnchor]))", context) == immutable_id
        # extension: the Binary encoding returns the bytes themselves
        assert ev("ConvertFromBase64([sourceAnchor], Binary)", context) == self.GUID.bytes_le
        assert ev("StringFromGuid(ConvertFromBase64([sourceAnchor], Binary))", context) == str(self.GUID)

    def test_string_from_guid_and_cguid_agree_with_uuid(self, ev):
        assert ev("StringFromGuid([objectGUID])", {"objectGUID": self.GUID.bytes_le}) == str(self.GUID)
        assert ev("CGuid([s])", {"s": str(self.GUID)}) == self.GUID.bytes_le
        assert ev("CGuid([s])", {"s": "{" + str(self.GUID).upper() + "}"}) == self.GUID.bytes_le
        assert ev("StringFromGuid(CGuid([s]))", {"s": str(self.GUID)}) == str(self.GUID)

    def test_source_anchor_rule(self, ev):
        # DESIGN §4: sourceAnchor = ms-DS-ConsistencyGuid if present, else objectGUID
        text = (
            "IIF(IsPresent([mS-DS-ConsistencyGuid]), ConvertToBase64([mS-DS-ConsistencyGuid]),"
            " ConvertToBase64([objectGUID]))"
        )
        other = uuid.uuid4()
        assert ev(text, {"objectGUID": self.GUID.bytes_le}) == base64.b64encode(self.GUID.bytes_le).decode()
        assert ev(text, {"objectGUID": self.GUID.bytes_le, "ms-ds-consistencyguid": other.bytes_le}) == (
            base64.b64encode(other.bytes_le).decode()
        )


def test_string_from_sid(ev):
    sid = bytes([1, 5, 0, 0, 0, 0, 0, 5]) + b"".join(n.to_bytes(4, "little") for n in (21, 1, 2, 3, 1104))
    assert ev("StringFromSid([objectSid])", {"objectSid": sid}) == "S-1-5-21-1-2-3-1104"


class TestReplaceChars:
    # docs: %ReplaceString% = ’:,Å:A,Ä:A,Ö:O,å:a,ä:a,ö,o — erratum: the last entry should read ö:o
    PATTERN = "’:,Å:A,Ä:A,Ö:O,å:a,ä:a,ö:o"

    def test_documented_examples_with_the_corrected_pattern(self, ev):
        # `ReplaceChars("Räksmörgås",%ReplaceString%)` Returns Raksmorgas
        assert ev('ReplaceChars("Räksmörgås",%ReplaceString%)', parameters={"ReplaceString": self.PATTERN}) == (
            "Raksmorgas"
        )
        # `ReplaceChars("O’Neil",%ReplaceString%)` Returns "ONeil", the single tick is defined to be removed
        assert ev('ReplaceChars("O’Neil",%ReplaceString%)', parameters={"ReplaceString": self.PATTERN}) == "ONeil"

    def test_the_mistyped_pattern_is_an_error_naming_the_entry(self, ev):
        with pytest.raises(ExpressionEvaluationError, match="ReplaceChars: ReplacePattern entry 'ö' has no ':'"):
            ev('ReplaceChars("Räksmörgås",%R%)', parameters={"R": "’:,Å:A,Ä:A,Ö:O,å:a,ä:a,ö,o"})

    def test_whitespace_in_the_pattern_is_ignored_and_targets_may_be_longer(self, ev):
        assert ev('ReplaceChars("Größe", "ö : oe, ß:ss")') == "Groesse"


class TestErrorsAndFlow:
    def test_error_raises_flow_error_with_the_message(self, ev):
        # `IIF(IsPresent([accountName]),[accountName],Error("AccountName is required"))`
        text = 'IIF(IsPresent([accountName]),[accountName],Error("AccountName is required"))'
        assert ev(text, {"accountName": "x"}) == "x"
        with pytest.raises(FlowError) as caught:
            ev(text, {})
        assert caught.value.message == "AccountName is required"
        assert isinstance(caught.value, ExpressionEvaluationError)

    def test_switch_falls_through_to_error(self, ev):
        text = 'Switch([city] = "London", "English", True, Error("Unknown city"))'
        with pytest.raises(FlowError, match="Unknown city"):
            ev(text, {"city": "Oslo"})

    def test_item_out_of_range_is_an_error(self, ev):
        with pytest.raises(ExpressionEvaluationError, match=r"Item: index 4 is out of range"):
            ev("Item([proxyAddresses],4)", {"proxyAddresses": PROXIES})

    @pytest.mark.parametrize(
        ("text", "context", "message"),
        [
            ("Left([n], 1)", {"n": b"\x01"}, "Left: string must be a string, got bin"),
            ('Left("abc", "x")', {}, "Left: NumChars must be a number"),
            ("StringFromGuid([g])", {"g": b"\x01\x02"}, "StringFromGuid: a binary GUID has 16 bytes, got 2"),
            ('CGuid("nope")', {}, "CGuid: 'nope' is not a GUID"),
            ('CNum("abc")', {}, "CNum: value must be a number"),
            ('ConvertFromBase64("***")', {}, "ConvertFromBase64: '***' is not base64"),
            ('ConvertFromBase64("SGk=", EBCDIC)', {}, "unknown name 'EBCDIC'"),
            ('IIF("maybe", 1, 2)', {}, "IIF: condition must be a Boolean"),
            ('BitAnd("x", 1)', {}, "BitAnd: value1 must be a number"),
            ('PadLeft("a", 3, "ab")', {}, "PadLeft: padCharacter must be exactly one character"),
        ],
    )
    def test_type_problem_names_the_function(self, ev, text, context, message):
        with pytest.raises(Exception) as caught:
            ev(text, context)
        assert message in str(caught.value)
        assert caught.value.__class__.__name__ in ("ExpressionEvaluationError", "ExpressionSyntaxError")


class TestDynamic:
    def test_now_is_utc_now(self, ev):
        before = dt.datetime.now(UTC)
        assert before <= ev("Now()") <= dt.datetime.now(UTC)

    def test_guid_is_a_fresh_guid_string(self, ev):
        first, second = ev("GUID()"), ev("Guid()")
        assert uuid.UUID(first) and first != second

    def test_random_num_is_within_bounds(self, ev):
        assert all(100 <= ev("RandomNum(100,999)") <= 999 for _ in range(20))

    def test_date_functions_round_trip(self, ev):
        assert ev("NumFromDate(DateFromNum(130543784930000000))") == 130543784930000000
        assert ev('DateAdd("d", -1, CDate("2001-03-01"))') == dt.datetime(2001, 2, 28, tzinfo=UTC)
        assert ev('DateAdd("yyyy", 1, CDate("2000-02-29"))') == dt.datetime(2001, 2, 28, tzinfo=UTC)
        assert ev('FormatDateTime([when], "dd.MM.yy HH:mm")', {"when": dt.datetime(2024, 3, 5, 7, 9)}) == (
            "05.03.24 07:09"
        )

    def test_date_from_num_never_expires(self, ev):
        assert ev("DateFromNum(&H7FFFFFFFFFFFFFFF)").year == 9999

    def test_compare_dates(self, ev):
        assert ev("DateFromNum([a]) < Now()", {"a": 129699324000000000}) is True


def test_cref_parameter_example(ev):
    # `CRef("CN=LC Services,CN=Microsoft,CN=lcspool01,CN=Pools,CN=RTC Service," & %Forest.LDAP%)`
    result = ev(
        'CRef("CN=LC Services,CN=Microsoft,CN=lcspool01,CN=Pools,CN=RTC Service," & %Forest.LDAP%)',
        parameters={"Forest.LDAP": "DC=fabrikam,DC=com"},
    )
    assert result == "CN=LC Services,CN=Microsoft,CN=lcspool01,CN=Pools,CN=RTC Service,DC=fabrikam,DC=com"


def test_escape_dn_component_example_with_balanced_brackets(ev):
    # docs: `EscapeDNComponent("cn=" & [displayName]) & "," & %ForestLDAP%)` — one ')' too many
    text = 'EscapeDNComponent("cn=" & [displayName]) & "," & %ForestLDAP%'
    assert ev(text, {"displayName": "Lee, Ann"}, parameters={"ForestLDAP": "DC=contoso,DC=com"}) == (
        r"cn=Lee\, Ann,DC=contoso,DC=com"
    )
    with pytest.raises(Exception, match="unexpected '\\)'"):
        compile_expression(text + ")", parameters={"ForestLDAP": "x"})


@pytest.mark.parametrize(
    ("text", "context", "expected"),
    [
        (r"DNComponent([dn],1)", {"dn": r"CN=Doe\, John,OU=Sales,DC=contoso,DC=com"}, "Doe, John"),
        (r"DNComponent([dn],2)", {"dn": r"CN=Doe\2C John,OU=Sales,DC=contoso,DC=com"}, "Sales"),
        (r"DNComponent([dn],1)", {"dn": r"CN=Doe\2C John,OU=Sales"}, "Doe, John"),
        ("DNComponent([dn],9)", {"dn": "CN=a,DC=b"}, None),
        ("DNComponentRev([dn],1)", {"dn": "CN=a,DC=b"}, "b"),
        ('Join([missing],",")', {}, None),
        ('Contains([missing],"x")', {}, 0),
        ('Where($i, Split("a,b,c", ","), $i <> "b")', {}, ["a", "c"]),
        ('Select($i, [v], IIF($i = "b", NULL, UCase($i)))', {"v": ["a", "b", "c"]}, ["A", "C"]),
        ('Select($i, [v], Select($i, Split($i, "-"), Left($i, 1)))', {"v": ["ab-cd", "ef"]}, ["a", "c", "e"]),
        ('With($x, [a] & "!", With($y, $x & "?", $y & $x))', {"a": "hi"}, "hi!?hi!"),
        ("Where($i, [missing], True)", {}, None),
        ('"a" + "b"', {}, "ab"),
        ("5 + [n]", {"n": "2"}, 7),
        ('LCase([proxyAddresses]) = "smtp:a@x"', {"proxyAddresses": ["SMTP:a@x", "smtp:b@x"]}, [True, False]),
        ("[a] = [b]", {"a": ["x", "y"], "b": ["y", "x"]}, True),
        ("[a] <> [b]", {"a": ["x", "y"], "b": ["y", "z"]}, True),
    ],
)
def test_more_behaviour(ev, text, context, expected):
    assert ev(text, context) == expected


def test_two_multi_valued_operands_only_compare(ev):
    with pytest.raises(ExpressionEvaluationError, match="two multi-valued operands"):
        ev("[a] & [b]", {"a": ["x", "y"], "b": ["y", "z"]})
